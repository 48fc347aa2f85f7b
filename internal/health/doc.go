// Package health serves the exporter's /-/healthy and /-/ready endpoints,
// as Prometheus and its exporters name them, for liveness and readiness
// probes (Kubernetes, load balancers, systemd checks).
//
// /-/healthy answers 200 as long as the process serves HTTP. /-/ready
// answers 200 once every enabled collector has answered once (a failing
// collector has answered: its failure is in the metrics), and 503 with the
// names of the collectors still waiting before that.
package health
