// Delayed delivery with JetStream message schedules.

package natsjs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/go-relay/relay"
	"github.com/go-relay/relay/internal/delivery"
)

var _ relay.DelayedPublisher = (*Broker)(nil)

// ErrSchedulesUnsupported is returned by [Broker.PublishAt], and by the
// Watermill [Publisher] for a message with [relay.MetadataDelayedUntil], when
// the server cannot schedule messages: JetStream message schedules came with
// nats-server 2.12, and the error names the version connected to. It is
// also returned when the server accepted the stream update that enables
// schedules but does not report them enabled, and when the topic's stream
// cannot have them (a mirror, or a stream with sources). Nothing is stored.
var ErrSchedulesUnsupported = errors.New("natsjs: message schedules not supported")

// ScheduleSubjectPrefix starts the subjects of the schedules relay
// publishes: a delayed message on topic waits as a schedule on
// ScheduleSubjectPrefix + topic + "." + <a unique id>, in the topic's stream.
// No topic starts with '$' ([relay.ValidateTopic]), so no topic's stream
// captures these subjects by accident, and no group's consumer delivers them.
const ScheduleSubjectPrefix = "$RELAY.sched."

// Headers of a JetStream message schedule (nats-server 2.12 and later,
// ADR-51): the schedule and the subject the message is published on when it
// fires.
const (
	scheduleHeader       = "Nats-Schedule"
	scheduleTargetHeader = "Nats-Schedule-Target"
)

// scheduleFilter is the subject filter that captures topic's schedules.
func scheduleFilter(topic string) string { return ScheduleSubjectPrefix + topic + ".*" }

// PublishAt stores payload, with a new UUID, to be delivered on topic no
// earlier than at: it is [relay.DelayedPublisher] on NATS. The message is a
// JetStream message schedule ("Nats-Schedule: @at <time>", RFC 3339 with
// nanoseconds; "Nats-Schedule-Target: <topic>") on a subject of its own
// under [ScheduleSubjectPrefix], in the topic's stream, and PublishAt returns
// once JetStream acknowledged it: it is then as durable as any message of the
// stream. At its time the server publishes it on topic (without the schedule
// headers) and removes the schedule. A time at or before now is published at
// once, as by [Broker.Publish].
//
// The first PublishAt on a topic by a Broker checks the server: one older
// than 2.12 gets an error wrapping [ErrSchedulesUnsupported] naming its
// version. It then enables schedules on the topic's stream if they are off,
// with a stream update of that field and of the schedule subject filter
// only (see the package doc, Delayed delivery). A time further ahead than
// [WithMaxDelay] (by default [relay.DefaultMaxDelay], 30 days), or the zero
// time, returns an error wrapping [relay.ErrInvalidDelay] and stores nothing;
// the other errors are those of Publish.
func (b *Broker) PublishAt(ctx context.Context, topic string, payload []byte, at time.Time) error {
	if ctx == nil {
		return fmt.Errorf("natsjs: publish %q: %w", topic, relay.ErrNilContext)
	}
	if err := b.usable(topic); err != nil {
		return fmt.Errorf("natsjs: publish %q: %w", topic, err)
	}
	if err := delivery.CheckDue(at, time.Now(), b.e.cfg.maxDelay); err != nil {
		return fmt.Errorf("natsjs: publish %q: %w", topic, err)
	}
	m := delivery.Message{UUID: watermill.NewUUID(), Payload: payload}
	if err := b.e.publishAt([]context.Context{ctx}, topic, []delivery.Message{m}, []time.Time{at}); err != nil {
		return fmt.Errorf("natsjs: publish %q: %w", topic, err)
	}
	return nil
}

// publishAt is publish for messages due at due[i]: those due later are sent
// as schedules, once the topic's stream allows them.
func (e *engine) publishAt(ctxs []context.Context, topic string, msgs []delivery.Message, due []time.Time) error {
	now := time.Now()
	later := false
	for _, at := range due {
		later = later || at.After(now)
	}
	if !later {
		return e.publish(ctxs, topic, msgs)
	}
	if _, ok := e.schedules.Load(topic); !ok {
		ctx, cancel := e.bound(ctxs[0])
		err := e.retry(ctx, topic, func(ctx context.Context) error { return e.ensureSchedules(ctx, topic) })
		cancel()
		if err != nil {
			return err
		}
		e.schedules.Store(topic, struct{}{})
	}
	return e.publishWith(ctxs, topic, msgs, func(i int, nm *nats.Msg) {
		if !due[i].After(now) {
			return
		}
		nm.Subject = ScheduleSubjectPrefix + topic + "." + watermill.NewULID()
		nm.Header.Set(scheduleHeader, "@at "+due[i].UTC().Format(time.RFC3339Nano))
		nm.Header.Set(scheduleTargetHeader, topic)
	})
}

// minScheduleVersion is the first nats-server version with message
// schedules.
var minScheduleVersion = [3]int{2, 12, 0}

// checkScheduleVersion returns an error wrapping ErrSchedulesUnsupported
// when the connected server is older than minScheduleVersion. An unknown
// version (not connected) passes: the stream check decides.
func checkScheduleVersion(version string) error {
	v, ok := parseVersion(version)
	if !ok {
		return nil
	}
	for i := range v {
		if v[i] != minScheduleVersion[i] {
			if v[i] < minScheduleVersion[i] {
				return fmt.Errorf("%w: the server is nats-server %s; JetStream message schedules need 2.12.0 or later", ErrSchedulesUnsupported, version)
			}
			return nil
		}
	}
	return nil
}

// parseVersion reads "major.minor.patch", ignoring a pre-release suffix.
func parseVersion(s string) ([3]int, bool) {
	var v [3]int
	s, _, _ = strings.Cut(s, "-")
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return v, false
		}
		v[i] = n
	}
	return v, true
}

// ensureSchedules makes sure the stream of topic takes schedules: the server
// is recent enough, the stream has AllowMsgSchedules, and its subjects
// capture scheduleFilter(topic). It updates those two fields and nothing
// else when they are missing.
func (e *engine) ensureSchedules(ctx context.Context, topic string) error {
	if err := checkScheduleVersion(e.js.Conn().ConnectedServerVersion()); err != nil {
		return err
	}
	name, err := e.ensureStream(ctx, topic)
	if err != nil {
		return err
	}
	stream, err := e.js.Stream(ctx, name)
	if err != nil {
		return err
	}
	cfg := stream.CachedInfo().Config
	captured := false
	for _, s := range cfg.Subjects {
		captured = captured || subjectMatches(s, scheduleFilter(topic))
	}
	if cfg.AllowMsgSchedules && captured {
		return nil
	}
	cfg.AllowMsgSchedules = true
	if !captured {
		cfg.Subjects = append(cfg.Subjects, scheduleFilter(topic))
	}
	info, err := e.js.UpdateStream(ctx, cfg)
	switch {
	case isAPIError(err, jetstream.JSErrCodeMirrorWithMsgSchedules), isAPIError(err, jetstream.JSErrCodeSourceWithMsgSchedules):
		return fmt.Errorf("%w: stream %q: %w", ErrSchedulesUnsupported, name, err)
	case err != nil:
		return fmt.Errorf("enable message schedules on stream %q: %w", name, err)
	case !info.CachedInfo().Config.AllowMsgSchedules:
		return fmt.Errorf("%w: nats-server %s accepted the update of stream %q but does not report allow_msg_schedules",
			ErrSchedulesUnsupported, e.js.Conn().ConnectedServerVersion(), name)
	}
	level := slog.LevelInfo
	if name != StreamName(topic) {
		level = slog.LevelWarn // not a stream relay names: say loudly that we changed it
	}
	e.log.Log(ctx, level, "natsjs: enabled message schedules on the topic's stream (allow_msg_schedules and the schedule subject); its other settings are left as they were",
		slog.String("stream", name), slog.String("topic", topic), slog.String("schedule_subjects", scheduleFilter(topic)))
	return nil
}
