'use strict';
// Example worker: node sdk/worker-node/examples/worker.js
const { createWorker } = require('../runner-worker');

createWorker({
  tasks: {
    'app.tasks.add': async ({ a, b }) => a + b,
  },
  events: {
    'app.events.notify': (payload, ctx) => {
      console.log('notify', JSON.stringify(payload), 'from', ctx.context.path || ctx.context.user);
    },
  },
});
