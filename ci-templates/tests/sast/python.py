import os
import subprocess
import sqlite3
from flask import Flask, request

app = Flask(__name__)


@app.route("/ping")
def ping():
    host = request.args.get("host")
    # ruleid: platform.python.subprocess-shell-with-input
    return subprocess.run("ping -c 1 " + host, shell=True, capture_output=True).stdout


@app.route("/calc")
def calc():
    # ruleid: platform.python.eval-of-input
    return str(eval(request.args["expr"]))


def find(conn, name):
    # ruleid: platform.python.sql-built-from-strings
    return conn.execute("SELECT * FROM users WHERE name = '" + name + "'").fetchall()


def find2(conn, name):
    sql = f"SELECT * FROM users WHERE name = '{name}'"
    # ruleid: platform.python.sql-built-from-strings
    return conn.execute(sql).fetchall()


def safe(conn, name):
    # ok: platform.python.sql-built-from-strings
    conn.execute("SELECT * FROM users WHERE name = ?", (name,))
    # ok: platform.python.subprocess-shell-with-input
    subprocess.run(["ping", "-c", "1", "localhost"])
    # ok: platform.python.eval-of-input
    return eval("1 + 1")


def find3(conn, name):
    q = "SELECT * FROM users WHERE name = '%s'" % name
    # ruleid: platform.python.sql-built-from-strings
    conn.execute(q)
    q2 = "DELETE FROM users WHERE name = '{}'".format(name)
    # ruleid: platform.python.sql-built-from-strings
    conn.executemany(q2, [])


def not_sql(runner, engine, name):
    # ok: platform.python.sql-built-from-strings
    runner.execute("build-" + name)
    # ok: platform.python.sql-built-from-strings
    engine.execute("step {}".format(name))


QUERY = "SELECT * FROM users WHERE name = '%s'"


def find4(conn, name):
    # ruleid: platform.python.sql-format-from-a-name
    conn.execute(QUERY % name)
    # ok: platform.python.sql-format-from-a-name
    conn.execute(QUERY, (name,))
