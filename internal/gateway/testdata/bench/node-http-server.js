'use strict';
// Plain Node HTTP server doing the same task as the worker example, with
// the same token check and response shape (peer (b) of the benchmark).
const http = require('http');
const port = Number(process.argv[2] || 7071);
http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/__runner/task/app.tasks.add') {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"ok":false,"error":{"code":"NOT_FOUND","message":"no such route"}}');
    return;
  }
  if (req.headers['x-runner-token'] !== 'secret') {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end('{"ok":false,"error":{"code":"UNAUTHORIZED","message":"missing or invalid token"}}');
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let body;
    try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch (e) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"ok":false,"error":{"code":"INVALID_JSON","message":"body is not valid JSON"}}');
      return;
    }
    const input = body && typeof body === 'object' && 'input' in body ? body.input : body;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ok: true, result: input.a + input.b }));
  });
}).listen(port, '127.0.0.1');
