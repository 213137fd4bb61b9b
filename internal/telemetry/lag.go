package telemetry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/go-relay/relay"
)

// LagFunc reads, from the server, how many messages of topic the consumer
// group has not been delivered yet (lag) and how many it was delivered and
// has not acknowledged (pending). It must return within ctx's deadline.
type LagFunc func(ctx context.Context, topic, group string) (lag, pending int64, err error)

// LagInterval is the shortest time between two reads of the server for the
// lag gauges: a reader that collects more often sees the cached figures.
const LagInterval = time.Second

// lagTimeout bounds one read of the lags of all watched groups.
const lagTimeout = 5 * time.Second

type lagKey struct{ topic, group string }

type lagFigures struct {
	set          attribute.Set
	lag, pending int64
	ok           bool
}

type lagState struct {
	read LagFunc

	mu      sync.Mutex
	reg     metric.Registration    // nil once closed; guarded by mu
	watched map[lagKey]*lagFigures // guarded by mu
	last    time.Time              // of the last read; guarded by mu
}

func (t *Telemetry) registerLag(errs *[]error) {
	if t.lag.read == nil {
		return
	}
	lag, err := t.meter.Int64ObservableGauge(MetricLag, metric.WithUnit("{message}"),
		metric.WithDescription("Messages stored and not yet delivered to the consumer group, as the server counts them."))
	if err != nil {
		*errs = append(*errs, err)
		return
	}
	pending, err := t.meter.Int64ObservableGauge(MetricPending, metric.WithUnit("{message}"),
		metric.WithDescription("Messages delivered to the consumer group and not yet acknowledged, as the server counts them."))
	if err != nil {
		*errs = append(*errs, err)
		return
	}
	reg, err := t.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		for _, f := range t.lagFigures(ctx) {
			if f.ok {
				o.ObserveInt64(lag, f.lag, metric.WithAttributeSet(f.set))
				o.ObserveInt64(pending, f.pending, metric.WithAttributeSet(f.set))
			}
		}
		return nil
	}, lag, pending)
	if err != nil {
		*errs = append(*errs, err)
		return
	}
	t.lag.mu.Lock()
	t.lag.reg = reg
	t.lag.mu.Unlock()
}

// WatchLag adds the consumer group group of topic to the groups whose lag
// the gauges report, from the next collection on.
func (t *Telemetry) WatchLag(topic, group string) {
	if t == nil || t.lag.read == nil {
		return
	}
	l := &t.lag
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.watched == nil {
		l.watched = make(map[lagKey]*lagFigures)
	}
	k := lagKey{topic, group}
	if _, ok := l.watched[k]; !ok {
		l.watched[k] = &lagFigures{set: attribute.NewSet(t.system,
			semconv.MessagingDestinationName(topic), semconv.MessagingConsumerGroupName(group))}
		l.last = time.Time{} // read the new group at the next collection
	}
}

// lagFigures returns the figures of the watched groups, read from the server
// when the last read is LagInterval old or more. A group whose read failed
// is left out until a read succeeds.
func (t *Telemetry) lagFigures(ctx context.Context) []lagFigures {
	l := &t.lag
	l.mu.Lock()
	defer l.mu.Unlock()
	if time.Since(l.last) >= LagInterval {
		ctx, cancel := context.WithTimeout(ctx, lagTimeout)
		defer cancel()
		for k, f := range l.watched {
			lag, pending, err := l.read(ctx, k.topic, k.group)
			f.lag, f.pending, f.ok = lag, pending, err == nil
		}
		l.last = time.Now()
	}
	out := make([]lagFigures, 0, len(l.watched))
	for _, f := range l.watched {
		out = append(out, *f)
	}
	return out
}

// Close unregisters the callbacks of the lag gauges and of the held gauge, so
// that a closed value is not asked again (nor kept alive by the meter
// provider).
func (t *Telemetry) Close() {
	if t == nil {
		return
	}
	l := &t.lag
	l.mu.Lock()
	regs := [2]metric.Registration{l.reg, t.heldCB}
	l.reg, t.heldCB = nil, nil
	l.mu.Unlock()
	for _, reg := range regs {
		if reg == nil {
			continue
		}
		if err := reg.Unregister(); err != nil {
			handle(err)
		}
	}
}

// InspectorLag returns the LagFunc that reads a group's Lag and Pending from
// in.Topic: what each backend's [relay.Inspector] reads from the server's
// own accounts. A group the topic does not have yet, or a lag the server
// cannot tell (LagKnown false), is an error: the gauges leave it out rather
// than report a figure that is not the server's.
func InspectorLag(in relay.Inspector) LagFunc {
	return func(ctx context.Context, topic, group string) (int64, int64, error) {
		info, err := in.Topic(ctx, topic)
		if err != nil {
			return 0, 0, err
		}
		for _, g := range info.Groups {
			if g.Group != group {
				continue
			}
			if !g.LagKnown {
				return 0, 0, fmt.Errorf("lag of group %q on %q: %w", group, topic, errLagUnknown)
			}
			return clampInt64(g.Lag), clampInt64(g.Pending), nil
		}
		return 0, 0, fmt.Errorf("lag of group %q on %q: %w", group, topic, errNoGroup)
	}
}

var (
	errLagUnknown = errors.New("the server cannot tell")
	errNoGroup    = errors.New("no such group")
)

func clampInt64(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}
