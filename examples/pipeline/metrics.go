package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// meters is the run's OpenTelemetry meter provider, which every broker of the
// run records with: a manual reader for the summary and, with -metrics-addr,
// a Prometheus exporter served over HTTP while the job runs. Both read the
// same instruments, so the summary prints what Prometheus scrapes.
type meters struct {
	mp     *sdkmetric.MeterProvider
	reader *sdkmetric.ManualReader
	srv    *http.Server
	served chan error
}

// newMeters makes the provider; addr ("" for none, ":9464", "127.0.0.1:0")
// is where /metrics is served, announced on out.
func newMeters(addr string, out io.Writer) (*meters, error) {
	m := &meters{reader: sdkmetric.NewManualReader()}
	opts := []sdkmetric.Option{sdkmetric.WithReader(m.reader)}
	if addr != "" {
		reg := promclient.NewRegistry()
		exporter, err := prometheus.New(prometheus.WithRegisterer(reg))
		if err != nil {
			return nil, fmt.Errorf("prometheus exporter: %w", err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("-metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		m.served = make(chan error, 1)
		go func() { m.served <- m.srv.Serve(ln) }()
		fmt.Fprintf(out, "metrics: http://%s/metrics (Prometheus)\n", ln.Addr())
		opts = append(opts, sdkmetric.WithReader(exporter))
	}
	m.mp = sdkmetric.NewMeterProvider(opts...)
	return m, nil
}

// outcomes returns relay.delivery.outcomes of topic, by outcome.
func (m *meters) outcomes(topic string) (map[string]int64, error) {
	var rm metricdata.ResourceMetrics
	if err := m.reader.Collect(context.Background(), &rm); err != nil {
		return nil, err
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			sum, ok := mt.Data.(metricdata.Sum[int64])
			if mt.Name != "relay.delivery.outcomes" || !ok {
				continue
			}
			for _, p := range sum.DataPoints {
				if v, _ := p.Attributes.Value("messaging.destination.name"); v.AsString() != topic {
					continue
				}
				o, _ := p.Attributes.Value("relay.delivery.outcome")
				got[o.AsString()] += p.Value
			}
		}
	}
	return got, nil
}

// close stops serving and shuts the provider down.
func (m *meters) close() {
	if m.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.srv.Shutdown(ctx)
		if err := <-m.served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Println("metrics server:", err)
		}
	}
	_ = m.mp.Shutdown(context.Background())
}
