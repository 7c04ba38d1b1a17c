'use strict';

const test = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const { createServer, greeting } = require('../src/server');
const flags = require('../src/flags');

function listen(server) {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${server.address().port}`)));
}

function sidecar(answers) {
  return http.createServer((req, res) => {
    const name = req.url.replace('/v1/flags/', '');
    if (!(name in answers)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(answers[name]);
  });
}

test('greeting', () => {
  assert.strictEqual(greeting('ops', false), 'hello, ops');
  assert.strictEqual(greeting('ops', true), 'good day, ops');
});

test('probes, hello and not found', async (t) => {
  const server = createServer('');
  const base = await listen(server);
  t.after(() => server.close());
  assert.strictEqual((await fetch(`${base}/healthz`)).status, 200);
  assert.strictEqual((await fetch(`${base}/readyz`)).status, 200);
  assert.strictEqual((await fetch(`${base}/nope`)).status, 404);
  const hello = await (await fetch(`${base}/hello?name=ops`)).json();
  assert.strictEqual(hello.greeting, 'hello, ops');
});

test('requests are counted for the canary analysis, probes are not', async (t) => {
  const server = createServer('');
  const base = await listen(server);
  t.after(() => server.close());
  await fetch(`${base}/hello`);
  await fetch(`${base}/nope`);
  await fetch(`${base}/healthz`);
  const text = await (await fetch(`${base}/metrics`)).text();
  assert.match(text, /http_requests_total\{service="example-service",status="200"\} 1\n/);
  assert.match(text, /http_requests_total\{service="example-service",status="404"\} 1\n/);
  assert.match(text, /http_request_duration_seconds_count\{service="example-service"\} 2\n/);
});

test('the histogram fills the buckets at and above the duration', () => {
  const { createRegistry } = require('../src/metrics');
  const r = createRegistry('s');
  r.observe(200, 0.02);
  assert.match(r.text(), /le="0.01"\} 0\n/);
  assert.match(r.text(), /le="0.025"\} 1\n/);
});

test('the flag switches the greeting', async (t) => {
  const flagServer = sidecar({ 'formal-greeting': '{"name":"formal-greeting","enabled":true}' });
  const flagsUrl = await listen(flagServer);
  const server = createServer(flagsUrl);
  const base = await listen(server);
  t.after(() => { server.close(); flagServer.close(); });
  const hello = await (await fetch(`${base}/hello`)).json();
  assert.strictEqual(hello.greeting, 'good day, world');
});

test('a flag that cannot be read is off', async (t) => {
  const flagServer = sidecar({ on: '{"enabled":true}', garbled: '{', off: '{"enabled":false}' });
  const flagsUrl = await listen(flagServer);
  t.after(() => flagServer.close());
  assert.strictEqual(await flags.enabled(flagsUrl, 'on'), true);
  assert.strictEqual(await flags.enabled(flagsUrl, 'off'), false);
  assert.strictEqual(await flags.enabled(flagsUrl, 'garbled'), false);
  assert.strictEqual(await flags.enabled(flagsUrl, 'missing'), false);
  assert.strictEqual(await flags.enabled('', 'on'), false);
  assert.strictEqual(await flags.enabled('http://127.0.0.1:1', 'on'), false);
});
