// Errors the client reports on its 'error' events.

/**
 * WsError is every error the client and its subscriptions emit.
 *
 * code is the server's error code for an error frame (unauthorized,
 * unavailable, whisper_blocked, ... see docs/protocol.md) or one of the
 * client's own: connect_failed, url_failed, bad_frame, not_connected,
 * not_subscribed. action and channel name what it answers, when known.
 */
export class WsError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{action?: string, channel?: string, cause?: unknown}} [details]
   */
  constructor(code, message, details = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = 'WsError';
    this.code = code;
    if (details.action) this.action = details.action;
    if (details.channel) this.channel = details.channel;
  }

  /** Builds a WsError from a server error frame. */
  static fromFrame(frame) {
    return new WsError(frame.code || 'error', frame.error || 'error frame without text', {
      action: frame.action,
      channel: frame.channel,
    });
  }
}
