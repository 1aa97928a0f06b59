// Package sentinel holds errors the keys package returns that only the
// adapters need to tell apart, so that the root package does not export
// a name for them.
package sentinel

import "errors"

// ErrUsageNotKept is wrapped (with keys.ErrNotFound) by the usage reads
// on a store that keeps no usage: the HTTP endpoints answer it with 404
// and this message, the gRPC adapter with NotFound.
var ErrUsageNotKept = errors.New("this server keeps no usage")

// ErrLogsNotKept is wrapped (with keys.ErrNotFound) by the request-log
// reads on a store that keeps no log.
var ErrLogsNotKept = errors.New("this server keeps no request log")

// ErrEventsNotKept is wrapped (with keys.ErrNotFound) by the event-log
// and webhook calls on a store that keeps no event log.
var ErrEventsNotKept = errors.New("this server keeps no event log and sends no webhooks")
