package ingest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"loadwatch/internal/store"
)

// maxGroupSamples bounds the samples of one group commit (a group holds at
// least one message whatever its size). 16,384 samples are about 2,000
// single readings, a few milliseconds of appending.
const maxGroupSamples = 1 << 14

// committer appends the samples of concurrent messages to the store in one
// Store.Append, so one TSDB commit and one WAL record cover many devices'
// messages (group commit). Every message (a device's batch of samples) is
// still appended exactly once and gets its own answer: an *AppendError is
// split by sample index, so a conflict or a too-old sample refuses only the
// message it belongs to, and a failure of the whole append (the commit)
// fails every message of the group, each of which is then retried by its
// device.
//
// There is no long-lived goroutine (each append runs on a short-lived one,
// see storeAppend). Up to parallel appends run at once
// (GOMAXPROCS: the TSDB appends series in parallel and serialises only its
// WAL write, so one append at a time would leave a core idle). A caller
// that finds fewer running appends its samples at once (no added latency
// when the queue is idle); callers that arrive while all run queue up, and
// when an append ends the first of them is woken to append everything that
// accumulated meanwhile, while the finished group's callers return. So at
// most parallel commits wait for the WAL lock instead of one per message.
//
// Callers hold their device's lock while they wait, so a group never holds
// two messages of one device, hence never two samples of one series from
// different messages.
type committer struct {
	st       Store
	parallel int // appends at once (at least 1)

	mu      sync.Mutex
	queue   []*commitReq // waiting, oldest first
	running int          // appends running
	bufs    [][]store.Sample

	appends, messages atomic.Uint64
}

type commitReq struct {
	samples []store.Sample
	// wake gets exactly one value: true when this request must lead the
	// next group, false when its group was appended (err is set).
	wake  chan bool
	err   error
	lead  bool // mu: designated leader
	taken bool // mu: in a group being appended
}

// storeAppend runs one Store.Append on a goroutine of its own and waits
// for it. The append goes deep (TSDB head, WAL record, its compression
// with frames of tens of KB) and a goroutine's stack never shrinks below
// what it once needed until a GC finds it mostly unused: done on the
// callers' goroutines (the broker's one reader per connection), every
// connection that ever led a group kept 64-256 KB of stack, about 700 MB
// at 10,000 devices. A fresh goroutine per append (one per group, not per
// message) costs about a microsecond and frees its stack when it ends.
func (c *committer) storeAppend(ctx context.Context, samples []store.Sample) error {
	done := make(chan error, 1)
	go func() { done <- c.st.Append(ctx, samples) }()
	return <-done
}

// append stores samples as one message and returns its own result (nil,
// an *store.AppendError for its refused samples, or the error of the whole
// append). A message whose ctx ends before its group is taken is not
// appended and gets ctx's error; once taken, it waits for the append.
func (c *committer) append(ctx context.Context, samples []store.Sample) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	if c.running < max(c.parallel, 1) {
		// Idle: append at once, alone (the queue is empty whenever
		// fewer than parallel appends run).
		c.running++
		c.mu.Unlock()
		c.appends.Add(1)
		c.messages.Add(1)
		err := c.storeAppend(ctx, samples)
		c.mu.Lock()
		c.handOff()
		c.mu.Unlock()
		return err
	}
	r := &commitReq{samples: samples, wake: make(chan bool, 1)}
	c.queue = append(c.queue, r)
	c.mu.Unlock()
	var lead bool
	select {
	case lead = <-r.wake:
	case <-ctx.Done():
		c.mu.Lock()
		if !r.taken && !r.lead {
			c.remove(r)
			c.mu.Unlock()
			return ctx.Err()
		}
		c.mu.Unlock()
		lead = <-r.wake
	}
	if !lead {
		return r.err
	}
	c.mu.Lock()
	return c.lead(ctx, r)
}

// lead appends the group that starts with r (the oldest waiting request,
// taken off the queue by handOff) and continues with what waits in the
// queue, hands the lead on, releases the group and returns r's result.
// c.mu is held on entry and released.
func (c *committer) lead(ctx context.Context, r *commitReq) error {
	var own error
	var group []*commitReq
	n := 0
	if err := ctx.Err(); err != nil {
		own = err // give up r, still append the others
	} else {
		r.taken = true
		group, n = append(group, r), len(r.samples)
	}
	taken := 0
	for _, q := range c.queue {
		if len(group) > 0 && n+len(q.samples) > maxGroupSamples {
			break
		}
		q.taken = true
		group = append(group, q)
		n += len(q.samples)
		taken++
	}
	c.queue = append(c.queue[:0], c.queue[taken:]...)

	var buf []store.Sample
	if len(group) > 1 && len(c.bufs) > 0 {
		buf = c.bufs[len(c.bufs)-1]
		c.bufs = c.bufs[:len(c.bufs)-1]
	}
	c.mu.Unlock()

	if len(group) > 0 {
		buf = c.appendGroup(context.WithoutCancel(ctx), group, n, buf)
	}

	c.mu.Lock()
	if buf != nil {
		c.bufs = append(c.bufs, buf)
	}
	c.handOff()
	c.mu.Unlock()
	for _, q := range group {
		if q != r {
			q.wake <- false
		}
	}
	if own != nil {
		return own
	}
	return r.err
}

// handOff, at the end of an append, takes the oldest waiting request off
// the queue and wakes it to lead the next group (it inherits this append's
// slot), or frees the slot; c.mu is held.
func (c *committer) handOff() {
	if len(c.queue) == 0 {
		c.running--
		return
	}
	next := c.queue[0]
	c.queue = append(c.queue[:0], c.queue[1:]...)
	next.lead = true
	next.wake <- true
}

// remove drops r from the queue; c.mu is held.
func (c *committer) remove(r *commitReq) {
	for i, q := range c.queue {
		if q == r {
			c.queue = append(c.queue[:i], c.queue[i+1:]...)
			return
		}
	}
}

// appendGroup appends the samples of group (n in all) and sets each
// request's err. buf is a spare batch buffer (or nil); it returns it,
// possibly grown, for reuse.
func (c *committer) appendGroup(ctx context.Context, group []*commitReq, n int, buf []store.Sample) []store.Sample {
	c.appends.Add(1)
	c.messages.Add(uint64(len(group)))
	if len(group) == 1 {
		group[0].err = c.storeAppend(ctx, group[0].samples)
		return buf
	}
	batch := slices.Grow(buf[:0], n)
	for _, q := range group {
		batch = append(batch, q.samples...)
	}
	err := c.storeAppend(ctx, batch)
	clear(batch) // keep no label references
	buf = batch[:0]
	var ae *store.AppendError
	switch {
	case err == nil:
	case errors.As(err, &ae) && len(ae.Refusals) == ae.Refused && ae.Refused > 0:
		split(ae.Refusals, group)
	case ae != nil:
		// A store that does not say which samples it refused: append
		// every message alone (samples already stored are taken again
		// without a second copy) so that each gets its own answer.
		for _, q := range group {
			q.err = c.storeAppend(ctx, q.samples)
		}
	default:
		for _, q := range group { // the append as a whole failed
			q.err = err
		}
	}
	return buf
}

// split hands each request of group the refusals (sorted by index into the
// group's concatenated samples) that fall on its own samples, re-indexed
// into them, as the *store.AppendError an Append of its samples alone
// would have returned.
func split(refusals []store.Refusal, group []*commitReq) {
	off := 0
	for _, q := range group {
		end := off + len(q.samples)
		var mine *store.AppendError
		for len(refusals) > 0 && refusals[0].Index < end {
			rf := store.Refusal{Index: refusals[0].Index - off, Err: refusals[0].Err}
			refusals = refusals[1:]
			if mine == nil {
				mine = &store.AppendError{First: rf.Err, Index: rf.Index}
			}
			mine.Refused++
			mine.Refusals = append(mine.Refusals, rf)
		}
		if mine != nil {
			q.err = mine
		}
		off = end
	}
}
