const express = require('express');
const cp = require('child_process');
const app = express();

app.get('/calc', (req, res) => {
  // ruleid: platform.javascript.eval-of-dynamic-code
  res.send(String(eval(req.query.expr)));
});

app.get('/ping', (req, res) => {
  // ruleid: platform.javascript.shell-command-from-input
  cp.exec('ping -c 1 ' + req.query.host, (err, out) => res.send(out));
});

app.get('/user', async (req, res) => {
  // ruleid: platform.javascript.sql-built-from-strings
  const rows = await db.query("SELECT * FROM users WHERE name = '" + req.query.name + "'");
  // ruleid: platform.javascript.sql-built-from-strings
  const more = await db.query(`SELECT * FROM users WHERE id = ${req.query.id}`);
  // ok: platform.javascript.sql-built-from-strings
  const safe = await db.query('SELECT * FROM users WHERE id = $1', [req.query.id]);
  // ok: platform.javascript.shell-command-from-input
  cp.exec('ls -l');
  // ok: platform.javascript.eval-of-dynamic-code
  eval('1 + 1');
  res.json({ rows, more, safe });
});

function ping2(host) {
  // ruleid: platform.javascript.shell-command-from-input
  return cp.execSync(`ping -c 1 ${host}`);
}

async function more(db, tasks, cache, name) {
  const q = "SELECT * FROM users WHERE name = '" + name + "'";
  // ruleid: platform.javascript.sql-built-from-strings
  await db.query(q);
  // ok: platform.javascript.sql-built-from-strings
  tasks.run(name + '-build');
  // ok: platform.javascript.sql-built-from-strings
  await cache.get('user:' + name);
  // ok: platform.javascript.sql-built-from-strings
  await db.all(`SELECT * FROM users WHERE name = ?`, [name]);
}

const { exec: run } = require('node:child_process');
function ping3(host) {
  const { execSync } = require('node:child_process');
  // ruleid: platform.javascript.shell-command-from-input
  return execSync('ping -c 1 ' + host);
}
