"""Write probe copied into the fleet's containers by the HA tests (python3-psycopg2 is there).

    probe.py writer DSN LOG SECONDS   insert numbered rows through DSN, reconnecting on errors
    probe.py local LOG SECONDS        insert into the local server (peer auth as postgres)

Each acknowledged commit is logged as 'ok <id> <unix time>', each failure as 'err <time>
<message>'; 'local' also logs 'role <time> primary|replica' whenever the server's role
changes. A probe stops after SECONDS or once LOG.stop exists."""

import os
import sys
import threading
import time

import psycopg2

TABLE = "ha_probe"


def log_line(log, text):
    log.write(text + "\n")
    log.flush()


def insert_loop(dsn, log, deadline, stop):
    conn, next_id = None, int(time.time() * 1000) * 1000  # unique across probes
    while time.time() < deadline and not os.path.exists(stop):
        try:
            if conn is None:
                conn = psycopg2.connect(dsn, connect_timeout=2)
                conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f"INSERT INTO {TABLE} (id, writer) VALUES (%s, %s)", (next_id, os.uname().nodename))
            log_line(log, f"ok {next_id} {time.time():.3f}")
            next_id += 1
            time.sleep(0.02)
        except psycopg2.Error as error:
            log_line(log, f"err {time.time():.3f} {str(error).splitlines()[0] if str(error) else type(error).__name__}")
            next_id += 1  # an id whose commit was not acknowledged is never reused
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.1)


def role_loop(log, deadline, stop):
    last = None
    while time.time() < deadline and not os.path.exists(stop):
        try:
            with psycopg2.connect("dbname=postgres host=/var/run/postgresql", connect_timeout=1) as conn:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_is_in_recovery()")
                    role = "replica" if cur.fetchone()[0] else "primary"
            conn.close()
        except psycopg2.Error:
            role = "down"
        if role != last:
            log_line(log, f"role {time.time():.3f} {role}")
            last = role
        time.sleep(0.1)


def main():
    mode = sys.argv[1]
    path, seconds = sys.argv[-2], float(sys.argv[-1])
    deadline, stop = time.time() + seconds, path + ".stop"
    with open(path, "w", encoding="utf-8") as log:
        if mode == "writer":
            insert_loop(sys.argv[2], log, deadline, stop)
        else:
            watcher = threading.Thread(target=role_loop, args=(log, deadline, stop), daemon=True)
            watcher.start()
            insert_loop("dbname=orders_db host=/var/run/postgresql", log, deadline, stop)
            watcher.join()


if __name__ == "__main__":
    main()
