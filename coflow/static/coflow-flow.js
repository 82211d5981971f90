// coflow-flow.js: follow a coflow flow's server-sent events (coflow.web) in a browser.
// A dependency-free ES module, served beside the streams at <mount>/coflow-flow.js.
//
//   import { subscribe } from "/flows/coflow-flow.js";
//   const sub = subscribe("/flows/book-1", { onState: (state) => render(state) });
//   sub.close();
//
//   <coflow-flow src="/flows/book-1"></coflow-flow>  (dispatches coflow-state, -done, -error)

const EVENTS = ["FlowState", "FlowDone", "FlowError", "FlowRestarted", "FlowStopped", "EncodeError"];
// After these the flow has ended: the EventSource is closed, so the browser does not reconnect.
const FINAL = new Set(["FlowDone", "FlowError", "FlowStopped"]);

/**
 * Subscribe to the flow streamed at `url`.
 * onState(state) for FlowState, onDone(state) for FlowDone, onError(data) for FlowError and
 * EncodeError ({error, message}), and onEvent(name, data) for every event, FlowRestarted
 * ({reason}) and FlowStopped (null) included.  Returns {close()}.
 */
export function subscribe(url, { onState, onDone, onError, onEvent } = {}) {
  const source = new EventSource(url);
  let closed = false;
  const close = () => {
    closed = true;
    source.close();
  };
  for (const name of EVENTS) {
    source.addEventListener(name, (message) => {
      if (closed) return;
      const data = JSON.parse(message.data);
      if (FINAL.has(name)) close();
      if (onEvent) onEvent(name, data);
      if (name === "FlowState" && onState) onState(data);
      else if (name === "FlowDone" && onDone) onDone(data);
      else if ((name === "FlowError" || name === "EncodeError") && onError) onError(data);
    });
  }
  return { close };
}

// Outside a browser (a test under Node) the module still loads; the element is not defined.
const Element = typeof HTMLElement === "undefined" ? class {} : HTMLElement;

/** `<coflow-flow src="...">`: subscribed while in the document; `.state` is the latest state. */
export class CoflowFlow extends Element {
  static get observedAttributes() {
    return ["src"];
  }

  constructor() {
    super();
    this.state = undefined;
    this._subscription = null;
  }

  connectedCallback() {
    this._subscribe();
  }

  disconnectedCallback() {
    this._unsubscribe();
  }

  attributeChangedCallback(name, before, after) {
    if (name === "src" && before !== after && this.isConnected) this._subscribe();
  }

  _subscribe() {
    this._unsubscribe();
    const src = this.getAttribute("src");
    if (!src) return;
    this._subscription = subscribe(src, {
      onState: (state) => this._emit("coflow-state", state, true),
      onDone: (state) => this._emit("coflow-done", state, true),
      onError: (error) => this._emit("coflow-error", error, false),
    });
  }

  _unsubscribe() {
    if (this._subscription) this._subscription.close();
    this._subscription = null;
  }

  _emit(type, detail, isState) {
    if (isState) this.state = detail;
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true }));
  }
}

if (typeof customElements !== "undefined" && !customElements.get("coflow-flow")) {
  customElements.define("coflow-flow", CoflowFlow);
}
