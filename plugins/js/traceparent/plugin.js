// `traceparent`: a sparkwasm middleware written in JavaScript (componentize-js).
//
// Gives every request a W3C trace context (`traceparent: 00-<trace id>-<span id>-01`), records the
// trace id in the request metadata and, once the answer is back, in the response metadata, so a
// row of the bronze table can be matched with the API's own logs.
//
//     middleware:
//       - type: wasm
//         name: traceparent
//         path: traceparent.wasm      # built by scripts/build-js-plugin.sh
//         sha256: "..."
//         config: {header: traceparent}

import { config } from 'sparkwasm:plugin/host@1.0.0';

let header = 'traceparent';

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export const handler = {
  init() {
    const settings = JSON.parse(config());
    if (settings.header !== undefined) {
      if (typeof settings.header !== 'string' || !/^[A-Za-z0-9-]+$/.test(settings.header)) {
        throw 'bad config: `header` must be a header name';
      }
      header = settings.header;
    }
    return { onRequest: true, onResponse: true, onError: false };
  },

  onRequest(request) {
    const trace = hex(crypto.getRandomValues(new Uint8Array(16)));
    const span = hex(crypto.getRandomValues(new Uint8Array(8)));
    request.setHeader(header, `00-${trace}-${span}-01`);
    request.setMetadata('trace_id', trace);
    return { tag: 'continue' };
  },

  onResponse(request, response) {
    const trace = request.metadata('trace_id');
    if (trace !== undefined) {
      response.setMetadata('trace_id', trace);
    }
    return { tag: 'done' };
  },

  onError(request, error) {
    return { tag: 'fail', val: error };
  },
};
