package pubsubtest

// The suite's verdicts are plain functions returning an error, so that they
// can be tested with wrong inputs (checks_test.go): that is how the suite shows
// it can fail.

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-relay/relay"
)

// maxListed bounds how many offending messages an error names.
const maxListed = 5

// checkExactlyOnce returns an error unless got (deliveries per payload) holds
// every payload of want exactly once and nothing else.
func checkExactlyOnce(got map[string]int, want []string) error {
	var missing, dup, extra []string
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[w] = true
		switch n := got[w]; {
		case n == 0:
			missing = append(missing, w)
		case n > 1:
			dup = append(dup, fmt.Sprintf("%s×%d", w, n))
		}
	}
	for _, g := range slices.Sorted(maps.Keys(got)) {
		if !wanted[g] {
			extra = append(extra, g)
		}
	}
	return joinProblems(len(want), missing, dup, extra)
}

// checkAtLeastOnce returns an error unless got holds every payload of want at
// least once and nothing else; duplicates are allowed.
func checkAtLeastOnce(got map[string]int, want []string) error {
	var missing, extra []string
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		wanted[w] = true
		if got[w] == 0 {
			missing = append(missing, w)
		}
	}
	for _, g := range slices.Sorted(maps.Keys(got)) {
		if !wanted[g] {
			extra = append(extra, g)
		}
	}
	return joinProblems(len(want), missing, nil, extra)
}

func joinProblems(want int, missing, dup, extra []string) error {
	var errs []error
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("%d of %d messages never delivered: %s", len(missing), want, list(missing)))
	}
	if len(dup) > 0 {
		errs = append(errs, fmt.Errorf("%d messages delivered more than once: %s", len(dup), list(dup)))
	}
	if len(extra) > 0 {
		errs = append(errs, fmt.Errorf("%d unexpected messages delivered: %s", len(extra), list(extra)))
	}
	return errors.Join(errs...)
}

func list(s []string) string {
	if len(s) <= maxListed {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q and %d more", s[:maxListed], len(s)-maxListed)
}

// checkCompeting returns an error unless the consumers' shares (deliveries per
// payload, one map per consumer of one group) are each non-empty, do not
// overlap, hold no duplicate and together hold exactly want.
func checkCompeting(shares []map[string]int, want []string) error {
	union := make(map[string]int)
	var errs []error
	for i, share := range shares {
		if len(share) == 0 {
			errs = append(errs, fmt.Errorf("consumer %d of %d received nothing: the group does not share work", i+1, len(shares)))
		}
		for p, n := range share {
			union[p] += n
		}
	}
	if err := checkExactlyOnce(union, want); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkOrder returns an error unless got equals want, element by element.
func checkOrder(got, want []string) error {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Errorf("message %d is %q, want %q (publish order broken)", i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		return fmt.Errorf("received %d messages, want %d", len(got), len(want))
	}
	return nil
}

// checkDeliveries returns an error unless a message was delivered exactly want
// times.
func checkDeliveries(got, want int) error {
	if got != want {
		return fmt.Errorf("message delivered %d times, want exactly %d", got, want)
	}
	return nil
}

// checkBackoff returns an error unless every gap between successive deliveries
// is at least minGap: a redelivery in a hot loop shows as a short gap.
func checkBackoff(deliveries []time.Time, minGap time.Duration) error {
	for i := 1; i < len(deliveries); i++ {
		if gap := deliveries[i].Sub(deliveries[i-1]); gap < minGap {
			return fmt.Errorf("delivery %d came %v after delivery %d, want a backoff of at least %v", i+1, gap, i, minGap)
		}
	}
	return nil
}

// checkPayload returns an error unless got equals want byte for byte; nil and
// empty are equal.
func checkPayload(got, want []byte) error {
	if bytes.Equal(got, want) {
		return nil
	}
	if len(got) != len(want) {
		return fmt.Errorf("payload has %d bytes, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Errorf("payload byte %d is %#02x, want %#02x", i, got[i], want[i])
		}
	}
	return nil
}

// checkDeadLetterMetadata returns an error unless md, the metadata of a dead
// letter of a message with metadata orig consumed from topic after
// attempts deliveries, carries relay's dead-letter keys and keeps orig.
func checkDeadLetterMetadata(md, orig map[string]string, topic string, attempts int) error {
	var errs []error
	if got := md[relay.MetadataSourceTopic]; got != topic {
		errs = append(errs, fmt.Errorf("metadata %s = %q, want the source topic %q", relay.MetadataSourceTopic, got, topic))
	}
	if got := md[relay.MetadataAttempts]; got != strconv.Itoa(attempts) {
		errs = append(errs, fmt.Errorf("metadata %s = %q, want %d", relay.MetadataAttempts, got, attempts))
	}
	if md[relay.MetadataReason] == "" {
		errs = append(errs, fmt.Errorf("metadata %s is empty, want the last error", relay.MetadataReason))
	}
	if md[relay.MetadataSourceID] == "" {
		errs = append(errs, fmt.Errorf("metadata %s is empty, want the source message id", relay.MetadataSourceID))
	}
	if err := checkMetadataKept(md, orig); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkMetadataKept returns an error unless every key of want is in got with
// the same value. Extra keys in got are allowed: a backend may add its own.
func checkMetadataKept(got, want map[string]string) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if v, ok := got[k]; !ok || v != want[k] {
			errs = append(errs, fmt.Errorf("metadata %q = %q (present: %v), want %q", k, v, ok, want[k]))
		}
	}
	return errors.Join(errs...)
}

// checkErrorIs returns an error unless err matches target.
func checkErrorIs(op string, err, target error) error {
	if !errors.Is(err, target) {
		return fmt.Errorf("%s returned %v, want an error matching %v", op, err, target)
	}
	return nil
}

// errorShape is the shape of every relay backend's error of an operation
// on a topic: the backend's name, the operation and the quoted topic, then
// the cause, "natsjs: publish \"orders.*\": relay: invalid topic ...".
var errorShape = regexp.MustCompile(`^[a-z][a-z0-9]*: [a-z ]+ "`)

// checkErrorShape says how err's text differs from "<backend>: op
// "<topic>": <cause>".
func checkErrorShape(err error, op, topic string) error {
	if err == nil {
		return nil
	}
	text := err.Error()
	prefix := op + " " + strconv.Quote(topic) + ": "
	backend, rest, ok := strings.Cut(text, ": ")
	if !ok || !errorShape.MatchString(text) || !strings.HasPrefix(rest, prefix) || strings.ContainsAny(backend, " \"") {
		return fmt.Errorf("error %q does not have the shape <backend>: %s", text, prefix+"<cause>")
	}
	return nil
}

// backoffFloor is the least gap checkBackoff accepts between two deliveries
// of a failed message: cfg.MinBackoff less a tenth, for servers that keep
// due times in whole milliseconds. Half of it, as the suite accepted before,
// let a backoff whose jitter went below the minimum pass.
func backoffFloor(cfg Config) time.Duration { return cfg.MinBackoff - cfg.MinBackoff/10 }
