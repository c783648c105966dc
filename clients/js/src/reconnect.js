// What reconnects, and when.

/**
 * Close codes after which the client reconnects by default. Everything
 * else, and a close the application asked for (client.close()), ends the
 * connection for good. The README has the table with the reasons.
 */
const reconnectCodes = new Set([
  1001, // going away: the server is shutting down or being deployed
  1005, // closed without a status code
  1006, // no close frame: network loss, refused handshake, keepalive timeout
  1009, // a frame of ours was too big: the next connection is fine
  1011, // internal error on the server (a handler panicked): retried with backoff
  1012, // service restart
  1013, // try again later
  1014, // bad gateway
  4008, // slow consumer: we did not read fast enough
  4009, // ping timeout on the server's side
]);

/**
 * defaultShouldReconnect is the reconnect policy by close code: true for
 * 1001, 1005, 1006, 1009, 1011, 1012, 1013, 1014, 4008 and 4009; false
 * for 1000 (the server ended the session on purpose), 1008 (policy:
 * sustained rate-limit abuse), protocol errors (1002, 1003, 1007, 1010)
 * and application codes 4000-4999 other than 4008 and 4009.
 * @param {{code: number, reason: string}} close
 * @returns {boolean}
 */
export function defaultShouldReconnect({ code }) {
  return reconnectCodes.has(code);
}

/**
 * backoffDelay is the wait before attempt number attempt (0 for the
 * first retry): exponential, capped at max, with full jitter (a uniform
 * random delay between 0 and the cap), so clients dropped together do
 * not come back together.
 * @param {number} attempt
 * @param {number} min
 * @param {number} max
 * @param {() => number} [random]
 */
export function backoffDelay(attempt, min, max, random = Math.random) {
  const cap = Math.min(max, min * 2 ** Math.min(attempt, 30));
  return Math.round(random() * cap);
}
