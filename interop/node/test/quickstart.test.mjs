// The README quick start, exactly as a new user runs it: `switchboard serve
// --dev`, connect the official client with the printed token, publish with
// the printed curl line, see the publication arrive.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Centrifuge } from 'centrifuge';
import WebSocket from 'ws';

import { TIMEOUT_MS, eventually, startServer, withTimeout } from '../lib/harness.mjs';

const run = promisify(execFile);

async function haveCurl() {
  try {
    await run('sh', ['-c', 'command -v curl']);
    return true;
  } catch {
    return false;
  }
}

test('serve --dev: printed token connects, printed curl line publishes, the client receives', async () => {
  const server = await startServer(undefined, { args: ['serve', '--dev', '--port', '0'] });
  let client;
  try {
    await server.waitLine((l) => l.startsWith('  bench: '), 'the end of the --dev banner');
    const lines = server.lines();
    assert.ok(lines.some((l) => l.includes('NOT FOR PRODUCTION')), lines.join('\n'));
    const line = (name) => {
      const l = lines.find((x) => x.startsWith(`  ${name}: `));
      assert.ok(l, `banner line "${name}" in:\n${lines.join('\n')}`);
      return l.slice(name.length + 4);
    };
    const first = (name) => line(name).split(' ')[0];

    client = new Centrifuge(first('websocket'), { token: first('token'), websocket: WebSocket });
    const sub = client.newSubscription('chat:index');
    const received = [];
    sub.on('publication', (ctx) => received.push(ctx.data));
    const subscribed = new Promise((resolve) => sub.once('subscribed', resolve));
    sub.subscribe();
    client.connect();
    const ctx = await withTimeout(subscribed, TIMEOUT_MS, 'subscribed to chat:index');
    assert.equal(ctx.recoverable, true, 'the dev namespace keeps history for recovery');

    const curl = line('publish');
    assert.match(curl, /^curl /);
    if (await haveCurl()) {
      const { stdout } = await run('sh', ['-c', curl], { timeout: TIMEOUT_MS });
      assert.match(stdout, /"result"/);
    } else {
      // No curl on this machine: post what the line posts.
      const url = /(http:\/\/\S+)/.exec(curl)[1];
      const key = /X-API-Key: ([^']+)'/.exec(curl)[1];
      const body = /-d '(.*)'$/.exec(curl)[1];
      const res = await fetch(url, { method: 'POST', headers: { 'X-API-Key': key }, body });
      assert.equal(res.status, 200);
    }
    await eventually(() => received.length === 1, 'the publication');
    assert.deepEqual(received[0], { text: 'hello' });
  } finally {
    client?.disconnect();
    const { code } = await server.stop();
    assert.equal(code, 0, server.stderr());
  }
});
