// Node's `events`: the EventEmitter @azure/functions creates when it loads (for HTTP
// streaming, which wasmlet does not support; see unsupported.js).
export class EventEmitter {
    #listeners = new Map();

    on(name, listener) {
        this.#listeners.set(name, [...(this.#listeners.get(name) ?? []), listener]);
        return this;
    }

    once(name, listener) {
        const wrapped = (...args) => {
            this.off(name, wrapped);
            listener(...args);
        };
        return this.on(name, wrapped);
    }

    off(name, listener) {
        this.#listeners.set(name, (this.#listeners.get(name) ?? []).filter((l) => l !== listener));
        return this;
    }

    emit(name, ...args) {
        const listeners = this.#listeners.get(name) ?? [];
        listeners.forEach((l) => l(...args));
        return listeners.length > 0;
    }
}
export default { EventEmitter };
