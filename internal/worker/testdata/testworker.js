'use strict';
// Test worker for the worker and gateway packages.
const path = require('path');
const { createWorker } = require(path.join(__dirname, '../../../sdk/worker-node/runner-worker'));

const sleep = (ms, signal) => new Promise((resolve, reject) => {
  const t = setTimeout(resolve, ms);
  if (signal) signal.addEventListener('abort', () => { clearTimeout(t); reject(new Error('cancelled')); });
});

let cancelled = 0;

createWorker({
  tasks: {
    'app.tasks.add': ({ a, b }) => a + b,
    'test.echo': (input, ctx) => ({ input, context: ctx.context }),
    'test.pid': () => process.pid,
    'test.sleep': async (input, ctx) => {
      try { await sleep(input.ms, ctx.signal); } catch (e) { cancelled++; throw e; }
      return input.ms;
    },
    'test.cancelled': () => cancelled,
    'test.crash': () => { process.exit(3); },
    'test.hang': () => { for (;;) { /* blocks the event loop */ } },
    'test.fail': (input) => { const e = new Error(input.message || 'boom'); e.code = input.code; throw e; },
    'test.garbage': () => { process.stdout.write('this is not json\n'); return new Promise(() => {}); },
    'test.unknownid': () => { process.stdout.write('{"id":987654321,"ok":true}\n'); return new Promise(() => {}); },
    'test.big': (input) => 'x'.repeat(input.n),
    'test.alloc': (input) => { global.hog = Buffer.alloc(input.mb * 1024 * 1024, 1); return process.pid; },
    'app/tasks/slash': (input, ctx) => ({ ok: true, path: ctx.context.path }),
    'app.tasks.é ü': () => 'unicode',
    'test.stderr': (input) => { process.stderr.write(input.line + '\n'); return true; },
  },
  events: {
    'app.events.notify': () => {},
  },
});
