package store

import "context"

// Compact runs the TSDB's compaction now (it also runs in the background
// every minute), for tests of block merging.
func Compact(ctx context.Context, s *Store) error { return s.db.Compact(ctx) }

// MaxBlockDuration exposes maxBlockDuration to the external tests.
var MaxBlockDuration = maxBlockDuration
