package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay/internal/lifecycle"
)

// ensureStream makes sure a stream captures topic, once per engine, and
// returns its name. relay never weakens a stream it did not just create:
//
//   - No stream captures the subject: relay creates [StreamName](topic).
//   - A stream of that name exists (another tool's, or relay's own with limits
//     an operator changed): its settings are left alone. If its subjects do
//     not capture topic, topic is added to them, the one change relay makes,
//     and a Warn record says so.
//   - Another stream captures the subject (for example one made by another
//     Watermill adapter): relay uses that one, unchanged.
func (e *engine) ensureStream(ctx context.Context, topic string) (string, error) {
	if name, ok := e.streams.Load(topic); ok {
		return name.(string), nil
	}
	sc := jetstream.StreamConfig{
		Name:      StreamName(topic),
		Subjects:  []string{topic},
		Storage:   jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy,
	}
	if e.cfg.streamConfig != nil {
		e.cfg.streamConfig(&sc)
		sc.Name, sc.Subjects = StreamName(topic), []string{topic}
	}
	name := sc.Name
	_, err := e.js.CreateStream(ctx, sc)
	switch {
	case errors.Is(err, jetstream.ErrStreamNameAlreadyInUse):
		name, err = e.adoptStream(ctx, sc.Name, topic)
	case isAPIError(err, codeStreamSubjectOverlap):
		name, err = e.js.StreamNameBySubject(ctx, topic)
	}
	if err != nil {
		return "", fmt.Errorf("create stream %q: %w", sc.Name, err)
	}
	e.streams.Store(topic, name)
	return name, nil
}

// adoptStream uses the existing stream name for topic, adding topic to its
// subjects if none of them captures it; nothing else of it is changed.
func (e *engine) adoptStream(ctx context.Context, name, topic string) (string, error) {
	stream, err := e.js.Stream(ctx, name)
	if err != nil {
		return "", err
	}
	cfg := stream.CachedInfo().Config
	for _, subject := range cfg.Subjects {
		if subjectMatches(subject, topic) {
			return name, nil
		}
	}
	cfg.Subjects = append(cfg.Subjects, topic)
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		if isAPIError(err, codeStreamSubjectOverlap) {
			return e.js.StreamNameBySubject(ctx, topic)
		}
		return "", fmt.Errorf("add subject %q to existing stream %q: %w", topic, name, err)
	}
	e.log.Warn("natsjs: added the topic's subject to an existing stream; its other settings are left as they were",
		slog.String("stream", name), slog.String("topic", topic), slog.Any("subjects", cfg.Subjects))
	return name, nil
}

// subjectMatches reports whether the subject filter captures the subject
// subject: tokens are separated by '.', '*' stands for one token and a final
// '>' for one or more.
func subjectMatches(filter, subject string) bool {
	for {
		ft, frest, fmore := strings.Cut(filter, ".")
		st, srest, smore := strings.Cut(subject, ".")
		switch {
		case ft == ">" && !fmore:
			return true
		case ft != "*" && ft != st:
			return false
		case !fmore || !smore:
			return !fmore && !smore
		}
		filter, subject = frest, srest
	}
}

// ensureConsumer creates or updates the group's durable consumer on stream.
func (e *engine) ensureConsumer(ctx context.Context, stream, topic string) (jetstream.Consumer, error) {
	name := ConsumerName(e.cfg.group)
	cc := jetstream.ConsumerConfig{
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if e.cfg.consumerConfig != nil {
		e.cfg.consumerConfig(&cc)
	}
	cc.Name, cc.Durable = name, name
	cc.FilterSubject, cc.FilterSubjects = topic, nil
	cc.AckPolicy = jetstream.AckExplicitPolicy
	cc.AckWait = e.cfg.ackWait
	// Unlimited: the server must never give up on a message by itself, or a
	// message whose last attempt died with its consumer would be neither
	// acknowledged nor dead-lettered. relay counts attempts (see doc.go).
	cc.MaxDeliver = -1
	cc.BackOff = nil
	cons, err := e.js.CreateOrUpdateConsumer(ctx, stream, cc)
	if err != nil {
		return nil, fmt.Errorf("create consumer %q on stream %q: %w", name, stream, err)
	}
	return cons, nil
}

// setup makes sure topic's stream and the group's consumer exist, retrying
// transient failures within ctx.
func (e *engine) setup(ctx context.Context, topic string) (jetstream.Consumer, error) {
	var cons jetstream.Consumer
	err := e.retry(ctx, topic, func(ctx context.Context) error {
		stream, err := e.ensureStream(ctx, topic)
		if err != nil {
			return err
		}
		cons, err = e.ensureConsumer(ctx, stream, topic)
		return err
	})
	return cons, err
}

// retry runs op until it succeeds, fails with an error that is not
// transient, or ctx is done, waiting with backoff between attempts. Each
// attempt has at most attemptTimeout: a request lost with a server that went
// down is given up and sent again, rather than awaited until ctx ends.
func (e *engine) retry(ctx context.Context, topic string, op func(ctx context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := op(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
		lost := errors.Is(err, context.DeadlineExceeded) // the attempt timed out, ctx did not
		if !lost && !transient(err) {
			return err
		}
		if noJetStream := e.jetStreamDisabled(ctx, err); noJetStream != nil {
			return noJetStream
		}
		if forgetsStream(err) {
			e.streams.Delete(topic)
		}
		if !lifecycle.Sleep(ctx, retryDelay(attempt)) {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
	}
}

// jetStreamDisabled returns a permanent error when err, an attempt's error,
// comes from a server, or an account, without JetStream, and nil otherwise.
// The JetStream API has no responders then, which also happens for a moment
// to a publish whose stream was just deleted: only the server's answer to an
// account-information request (nats-server v2.15.2: "jetstream not enabled",
// err_code 10076, or no responders) tells the two apart.
func (e *engine) jetStreamDisabled(ctx context.Context, err error) error {
	if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	_, infoErr := e.js.AccountInfo(ctx)
	if errors.Is(infoErr, jetstream.ErrJetStreamNotEnabled) || errors.Is(infoErr, jetstream.ErrJetStreamNotEnabledForAccount) {
		return fmt.Errorf("%w: JetStream is not enabled on the server or for this account (run nats-server with -js, or enable it in the account's configuration) (last error: %w)", infoErr, err)
	}
	return nil
}
