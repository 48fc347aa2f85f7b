// Package exposition serves snapshots of the metric tree on /metrics.
//
// A Handler takes one snapshot per scrape and writes it straight to the
// wire, in the Prometheus text format (0.0.4) or in OpenMetrics (1.0.0) by
// content negotiation, after the families of a client_golang registry (Go
// runtime, process, build information, the handler's own metrics and the
// Graphite writer's). Nothing is converted to client_golang metrics or
// protocol buffers on the way: label text is appended to a buffer, as
// kube-state-metrics writes the series of its metric store and as the
// VictoriaMetrics metrics package writes exposition.
//
// Scrapes that arrive while a snapshot is being taken and rendered wait for
// it and are served the same bytes; a scrape arriving after that gets a
// fresh snapshot. The rendered body is kept gzip-compressed only, once per
// snapshot and format, and written from that shared buffer to every client
// of the snapshot (decompressed on the fly for a client that did not ask
// for gzip), so memory does not grow with the number of clients. Writes
// have a progress deadline and scrapes an overall one, and when every
// request slot is taken a client that has stopped reading is cut off to
// make room, so clients that never read cannot lock the others out.
package exposition
