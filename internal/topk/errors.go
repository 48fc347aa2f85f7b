package topk

import "errors"

// Errors of New, for configurations it refuses.
var (
	errCapacity = errors.New("topk: capacity must be between 1 and 2^30")
	errWindow   = errors.New("topk: window must be positive")
	errBuckets  = errors.New("topk: buckets must be between 1 and 64, and the window at least one nanosecond per bucket")
)
