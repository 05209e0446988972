// Browser tracing: document-load and fetch spans, `traceparent` on every call
// to the backend (so its server spans are children of the browser's fetch
// spans), exported as OTLP/HTTP protobuf to the backend's relay, which
// forwards them with its own credentials: no API key reaches the browser.
import { trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { DocumentLoadInstrumentation } from '@opentelemetry/instrumentation-document-load';
import { FetchInstrumentation } from '@opentelemetry/instrumentation-fetch';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, WebTracerProvider } from '@opentelemetry/sdk-trace-web';

export const BACKEND_URL = __BACKEND_URL__;
const RELAY_URL = `${BACKEND_URL}/api/telemetry/v1/traces`;
const escaped = BACKEND_URL.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const provider = new WebTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'cruddur-frontend-stub' }),
  spanProcessors: [
    new BatchSpanProcessor(new OTLPTraceExporter({ url: RELAY_URL }), { scheduledDelayMillis: 500, maxExportBatchSize: 50 }),
  ],
});
provider.register();

registerInstrumentations({
  instrumentations: [
    new DocumentLoadInstrumentation(),
    new FetchInstrumentation({
      propagateTraceHeaderCorsUrls: [new RegExp(`^${escaped}/api/`)],
      ignoreUrls: [RELAY_URL],
      clearTimingResources: true,
    }),
  ],
});

export const tracer = trace.getTracer('cruddur-frontend-stub');

/** Sends every finished span now (the tests call it; pages also flush on hide). */
export function flush() {
  return provider.forceFlush();
}
addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'hidden') flush();
});
