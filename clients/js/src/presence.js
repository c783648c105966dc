// The member list of one presence channel, kept from the server's
// presence frames (docs/presence.md):
//
//   members  the full list: the map is reset to it
//   join     one member added
//   leave    one member removed
//
// Frames carry "version", the channel's count of membership changes. A
// join or leave whose version is not above the last applied frame's is
// dropped (the server never sends one, but a client may guard against
// it); frames without a version are always applied. Every members frame
// resets the map and the version, whatever its version: the server sends
// one after it detected a gap or lost its state.

/**
 * @typedef {{id: string, info?: unknown}} Member
 * @typedef {{kind: 'here', members: Member[]} | {kind: 'joining' | 'leaving', member: Member}} Change
 */

export class Presence {
  /** @type {Map<string, unknown>} id -> info; one Map for the subscription's life */
  members = new Map();
  /** @type {number | null} version of the last applied frame */
  version = null;
  /** true once a members frame was applied */
  known = false;

  /**
   * Applies one presence frame and returns what changed for the
   * application, or null when nothing did (a stale or repeated event).
   * @returns {Change | null}
   */
  apply(frame) {
    const version = typeof frame.version === 'number' ? frame.version : null;
    switch (frame.event) {
      case 'members': {
        this.members.clear();
        for (const u of frame.users || []) {
          if (u && typeof u.id === 'string') this.members.set(u.id, u.info);
        }
        this.version = version;
        this.known = true;
        return { kind: 'here', members: this.list() };
      }
      case 'join':
      case 'leave': {
        const user = frame.user;
        if (!user || typeof user.id !== 'string') return null;
        if (version !== null && this.version !== null && version <= this.version) return null;
        if (version !== null) this.version = version;
        if (frame.event === 'join') {
          const had = this.members.has(user.id);
          this.members.set(user.id, user.info);
          return had ? null : { kind: 'joining', member: member(user.id, user.info) };
        }
        if (!this.members.has(user.id)) return null;
        const info = this.members.get(user.id);
        this.members.delete(user.id);
        return { kind: 'leaving', member: member(user.id, info === undefined ? user.info : info) };
      }
      default:
        return null;
    }
  }

  /** The members as an array of {id, info}, in map order. */
  list() {
    return [...this.members].map(([id, info]) => member(id, info));
  }

  /** Forgets everything; the next members frame starts afresh. */
  clear() {
    this.members.clear();
    this.version = null;
    this.known = false;
  }
}

function member(id, info) {
  return info === undefined ? { id } : { id, info };
}
