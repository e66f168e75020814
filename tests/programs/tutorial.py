"""The sixteen patterns of a multiprocessing tutorial, in plain multiprocessing.

No mptrace here: the tests run it with ``mptrace run tutorial.py METHOD`` (or
through ``tutorial_init.py``, which adds ``mptrace.init()``). Every child
says ``hello from <pattern>`` once on the ``tutorial`` logger; the parent
prints what it saw as one JSON line.
"""

import json
import logging
import multiprocessing as mp
import multiprocessing.managers
import os
import sys
from concurrent.futures import ProcessPoolExecutor

log = logging.getLogger("tutorial")


def hello(pattern, *rest):
    log.info("hello from %s", pattern)


def square(x):
    log.info("hello from pool %s", x)
    return x * x


def mul(a, b):
    log.info("hello from starmap %s", a)
    return a * b


def cube(x):
    log.info("hello from executor %s", x)
    return x**3


def queue_child(q):
    hello("queue")
    q.put("via queue")


def pipe_child(conn):
    hello("pipe")
    conn.send("via pipe")
    conn.close()


def lock_child(lock, i, started):
    started.set()
    with lock:
        hello(f"lock {i}")


def semaphore_child(sem, i):
    with sem:
        hello(f"semaphore {i}")


def shared_child(value, array):
    hello("value/array")
    value.value = 3.5
    for i in range(len(array)):
        array[i] = -array[i]


def manager_child(d, lst):
    hello("manager")
    d["child"] = os.getpid()
    lst.append("from child")


def daemon_child():
    hello("daemon")


def blocked_child(ready):
    hello("terminate")
    ready.set()
    mp.Event().wait(60)  # until terminated


def exit_child():
    hello("exit code")
    sys.exit(3)


def raising_child():
    hello("exception")
    raise ValueError("the child failed on purpose")


def mp_logger_child():
    mp.get_logger().warning("hello from get_logger")


def affinity_child():
    import psutil

    cpus = psutil.Process().cpu_affinity()
    psutil.Process().cpu_affinity(cpus[:1])
    hello("affinity")


class Store(mp.managers.BaseManager):
    pass


_data = {}


def _get_data():
    return _data


Store.register("data", callable=_get_data, proxytype=mp.managers.DictProxy)


def main(method):
    mp.set_start_method(method, force=True)
    out = {"codes": {}}

    def run(name, target, *args, daemon=None):
        p = mp.Process(target=target, args=args, name=name, daemon=daemon)
        p.start()
        p.join(60)
        out["codes"][name] = p.exitcode
        return p

    run("start-join", hello, "start/join")
    with mp.Pool(2) as pool:
        out["map"] = pool.map(square, range(4))
        out["starmap"] = pool.starmap(mul, [(1, 2), (3, 4)])
    with ProcessPoolExecutor(2) as ex:
        out["executor"] = list(ex.map(cube, range(3)))
    q = mp.Queue()
    run("queue", queue_child, q)
    out["queue"] = q.get(timeout=60)
    parent_conn, child_conn = mp.Pipe()
    run("pipe", pipe_child, child_conn)
    out["pipe"] = parent_conn.recv()
    sem = mp.Semaphore(1)
    for i in range(2):
        run(f"semaphore-{i}", semaphore_child, sem, i)
    value, array = mp.Value("d", 0.0), mp.Array("i", range(3))
    run("value-array", shared_child, value, array)
    out["value"], out["array"] = value.value, list(array)
    with mp.Manager() as manager:
        d, lst = manager.dict(), manager.list()
        run("manager", manager_child, d, lst)
        out["manager"] = [d["child"] > 0, list(lst)]
    run("daemon", daemon_child, daemon=True)
    ready = mp.Event()
    p = mp.Process(target=blocked_child, args=(ready,), name="terminate")
    p.start()
    ready.wait(60)
    p.terminate()
    p.join(60)
    out["codes"]["terminate"] = p.exitcode
    run("exit-code", exit_child)
    run("exception", raising_child)
    mp.log_to_stderr(logging.WARNING)
    run("get-logger", mp_logger_child)
    run("affinity", affinity_child)
    with Store(authkey=b"secret") as store:
        store.data()["x"] = 1
        out["base_manager"] = store.data()["x"]
    # The Lock example never joins its children. They log once the program
    # has left main(); it waits only until they hold the lock's handle (at
    # exit the stdlib unlinks the lock, and a spawn child still unpickling
    # it fails, mptrace or not).
    lock = mp.Lock()
    lock.acquire()
    started = [mp.Event() for _ in range(2)]
    for i in range(2):
        args = (lock, i, started[i])
        mp.Process(target=lock_child, args=args, name=f"lock-{i}").start()
    for event in started:
        event.wait(60)
    lock.release()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
