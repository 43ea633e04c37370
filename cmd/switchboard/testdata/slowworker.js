'use strict';
// Test worker for the shutdown tests: task test.slow creates the file
// input.started, then answers {"released":true} once the file input.release
// exists, so a test holds a worker-gateway request in flight for as long
// as it needs without timing anything.
const fs = require('fs');
const path = require('path');
const { createWorker } = require(path.join(__dirname, '..', '..', '..', 'sdk', 'worker-node', 'runner-worker'));

// Switchboard gone (a test killed it): leave rather than poll forever.
process.stdin.on('end', () => process.exit(0));

createWorker({
  tasks: {
    'test.slow': (input, ctx) => new Promise((resolve, reject) => {
      fs.writeFileSync(input.started, '');
      const poll = setInterval(() => {
        if (fs.existsSync(input.release)) {
          clearInterval(poll);
          resolve({ released: true });
        }
      }, 5);
      ctx.signal.addEventListener('abort', () => {
        clearInterval(poll);
        reject(new Error('cancelled'));
      });
    }),
  },
});
