package natsjs

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
	"github.com/go-relay/relay/internal/telemetry"
)

// Tuning of the engine. They are not options: they trade latency of rare
// events (idle fetch renewal, recovery after an outage) against load.
const (
	// fetchWait bounds one pull request. An idle subscription renews its pull
	// request this often; it is also the longest a fetch waits on a server
	// that went away without a word.
	fetchWait = 5 * time.Second
	// minRetry and maxRetry bound the backoff between attempts of a failed
	// fetch, stream or consumer set-up, or publish.
	minRetry = 50 * time.Millisecond
	maxRetry = 5 * time.Second
	// attemptTimeout bounds one attempt of a management request or of a
	// publish within a longer deadline.
	attemptTimeout = 5 * time.Second
	// flushTimeout bounds the flush of acks when a subscription stops.
	flushTimeout = 2 * time.Second
	// finishWait bounds how long a stopping subscription waits for the
	// server to complete its pull request in progress (see finish).
	finishWait = time.Second
)

// JetStream error codes relay reacts to.
const (
	codeStreamSubjectOverlap = 10065
	codeMessageTooLarge      = jetstream.JSErrCodeStreamMessageExceedsMaximum
)

// engine is what a Broker, a Publisher and a Subscriber share: stream set-up,
// publishing, and the fetch loop that delivers to a process function and
// settles by the delivery policy.
type engine struct {
	js  jetstream.JetStream
	cfg config
	log *slog.Logger
	tel *telemetry.Telemetry

	// streams maps a topic to the name of the stream known to hold it, so that
	// a stream is set up once per topic and process, not once per message.
	streams sync.Map
	// schedules holds the topics whose stream is known to take message
	// schedules (see publishAt).
	schedules sync.Map
}

func newEngine(js jetstream.JetStream, opts []Option) (*engine, error) {
	if js == nil {
		return nil, fmt.Errorf("natsjs: %w: %w", relay.ErrInvalidOption, errNilJetStream)
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	log := delivery.Logger(cfg.logger, pkg, cfg.group)
	e := &engine{js: js, cfg: cfg, log: log}
	e.tel = telemetry.New("nats", cfg.tel, e.lag)
	return e, nil
}

// lag reads the lag gauges' figures of group on topic from its durable
// consumer's info: num_pending (stored, not yet delivered to the group) and
// num_ack_pending (delivered, not acknowledged), as nats-server v2.15
// counts them: the figures [Inspector.Topic] reports as Lag and Pending, read
// with one consumer info request rather than the inspector's whole topic,
// and by the group's own name, which the inspector cannot give back for a
// group that [ConsumerName] rewrites.
func (e *engine) lag(ctx context.Context, topic, group string) (int64, int64, error) {
	stream := StreamName(topic)
	if name, ok := e.streams.Load(topic); ok {
		stream = name.(string)
	}
	c, err := e.js.Consumer(ctx, stream, ConsumerName(group))
	if err != nil {
		return 0, 0, fmt.Errorf("natsjs: consumer info %q: %w", topic, err)
	}
	info := c.CachedInfo()
	return int64(min(info.NumPending, math.MaxInt64)), int64(info.NumAckPending), nil
}

// validTopic is [relay.ValidateTopic] for a publish. A topic whose stream
// the engine knows was validated before it was set up (every caller of
// ensureStream validates first), so it is not judged again on every
// message: the lookup costs a tenth of the rule.
func (e *engine) validTopic(topic string) error {
	if _, ok := e.streams.Load(topic); ok {
		return nil
	}
	return relay.ValidateTopic(topic)
}

// bound returns ctx, limited to the request timeout if it has no deadline.
func (e *engine) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, e.cfg.requestTimeout)
}
