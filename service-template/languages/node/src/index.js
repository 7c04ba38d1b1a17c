'use strict';

// Entry point: PORT (default 8080) and FLAGS_URL, the feature-flag sidecar.
const { createServer } = require('./server');

createServer(process.env.FLAGS_URL || '').listen(Number(process.env.PORT || 8080));
