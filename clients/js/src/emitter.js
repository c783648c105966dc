// A small event emitter shared by Client and Subscription.
//
// Listeners run synchronously, in the order they were added. A listener
// that throws does not stop the others or the client's own bookkeeping:
// its error is rethrown on a fresh task, where the platform reports it
// (window.onerror in a browser, uncaughtException in Node), as
// EventTarget does.

export class Emitter {
  #listeners = new Map(); // event name -> Set of functions

  /**
   * Adds listener for event. Returns this, so calls chain.
   * @param {string} event
   * @param {Function} listener
   */
  on(event, listener) {
    if (typeof listener !== 'function') {
      throw new TypeError(`listener for "${event}" must be a function`);
    }
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener);
    return this;
  }

  /** Adds a listener that is removed after its first call. */
  once(event, listener) {
    const wrapped = (...args) => {
      this.off(event, wrapped);
      listener(...args);
    };
    wrapped.listener = listener;
    return this.on(event, wrapped);
  }

  /** Removes listener (added with on or once) from event. */
  off(event, listener) {
    const set = this.#listeners.get(event);
    if (!set) return this;
    for (const fn of set) {
      if (fn === listener || fn.listener === listener) set.delete(fn);
    }
    if (set.size === 0) this.#listeners.delete(event);
    return this;
  }

  /** Reports whether event has at least one listener. */
  hasListeners(event) {
    return this.#listeners.has(event);
  }

  /** Calls every listener of event with args. Internal. */
  _emit(event, ...args) {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn.apply(this, args);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }
}
