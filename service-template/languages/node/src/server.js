'use strict';

// The service's HTTP API: health and readiness for the probes of deploy/base/rollout.yaml, and one
// greeting endpoint whose wording a feature flag switches.
const http = require('node:http');
const flags = require('./flags');
const { createRegistry } = require('./metrics');

// The service's name: its metrics' service label (the canary analysis selects by it).
const NAME = 'example-service';

function greeting(name, formal) {
  return formal ? `good day, ${name}` : `hello, ${name}`;
}

function createServer(flagsUrl) {
  const metrics = createRegistry(NAME);
  const server = http.createServer(async (req, res) => {
    metrics.track(req, res);
    const url = new URL(req.url, 'http://localhost');
    if (url.pathname === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(metrics.text());
      return;
    }
    if (url.pathname === '/healthz' || url.pathname === '/readyz') {
      res.writeHead(200).end('ok');
      return;
    }
    if (url.pathname === '/hello' && req.method === 'GET') {
      const formal = await flags.enabled(flagsUrl, 'formal-greeting');
      const name = url.searchParams.get('name') || 'world';
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ greeting: greeting(name, formal), 'formal-greeting': formal }));
      return;
    }
    res.writeHead(404).end('not found');
  });
  // Slow or oversized requests are cut off (hostile input).
  server.headersTimeout = 5000;
  server.requestTimeout = 10000;
  server.maxHeaderSize = 16384;
  return server;
}

module.exports = { createServer, greeting, NAME };
