package natsjs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ensureStream creates or updates the stream of topic, once per engine, and
// returns its name. When another stream already captures the topic's subject
// (for example one made by another Watermill adapter), relay uses that one.
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
	_, err := e.js.CreateOrUpdateStream(ctx, sc)
	if isAPIError(err, codeStreamSubjectOverlap) {
		name, err = e.js.StreamNameBySubject(ctx, topic)
	}
	if err != nil {
		return "", fmt.Errorf("create stream %q: %w", sc.Name, err)
	}
	e.streams.Store(topic, name)
	return name, nil
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
		if forgetsStream(err) {
			e.streams.Delete(topic)
		}
		if !sleep(ctx, retryDelay(attempt)) {
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		}
	}
}
