package delivery

import "log/slog"

// The attribute keys of the records every backend logs, one set for all, so
// that an operator's queries work whatever the backend.
const (
	LogBackend         = "backend"           // "memory", "natsjs", "redisstreams"
	LogGroup           = "group"             // the consumer group
	LogTopic           = "topic"             // the source topic
	LogID              = "id"                // the backend's id of the stored message
	LogAttempt         = "attempt"           // the delivery number, 1 for the first
	LogAttempts        = "attempts"          // deliveries made, on a dead letter
	LogError           = "error"             // the error
	LogReason          = "reason"            // a dead letter's reason, as written
	LogDeadLetterTopic = "dead_letter_topic" // where the dead letter went
)

// Logger returns l with the attributes that every record of a backend's
// subscriptions carries: backend and group.
func Logger(l *slog.Logger, backend, group string) *slog.Logger {
	return l.With(slog.String(LogBackend, backend), slog.String(LogGroup, group))
}

// LogHandlerFailed logs, at Debug, that the processing of d ended with err
// and the policy decides what follows (a retry, or a dead letter logged
// apart). l carries the backend, group and topic.
func LogHandlerFailed(l *slog.Logger, backend string, d *Delivery, err error) {
	l.Debug(backend+": handler failed", slog.String(LogID, d.ID), slog.Int(LogAttempt, d.Attempt), slog.Any(LogError, err))
}

// LogDeadLettered logs, at Warn, that d was written to dlTopic with reason.
func LogDeadLettered(l *slog.Logger, backend string, d *Delivery, reason, dlTopic string) {
	l.Warn(backend+": message dead-lettered", slog.String(LogID, d.ID), slog.Int(LogAttempts, d.Attempt),
		slog.String(LogReason, reason), slog.String(LogDeadLetterTopic, dlTopic))
}

// LogSettleFailed logs, at Error, that d could not be settled (an ack, a
// retry or a dead letter failed with err): the message stays pending and
// comes back.
func LogSettleFailed(l *slog.Logger, backend string, d *Delivery, err error) {
	l.Error(backend+": settle failed; the message stays pending", slog.String(LogID, d.ID), slog.Int(LogAttempt, d.Attempt), slog.Any(LogError, err))
}
