// This file is not part of upstream mochi-mqtt: it holds loadwatch's two
// memory patches (see PATCHES.md in this directory).

package mqtt

import (
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// outQueue is a client's queue of packets waiting for WriteLoop. Upstream
// uses a channel of MaximumClientWritesPending slots, allocated in full for
// every client when it connects (8 KB per client at 1,024): this queue
// holds up to the same limit but grows as packets arrive and gives a large
// buffer back once it drains.
type outQueue struct {
	mu    sync.Mutex
	buf   []*packets.Packet // ring
	head  int
	n     int
	limit int
	ready chan struct{} // a value when packets may be waiting
}

// outQueueKeep is the largest buffer a drained queue keeps.
const outQueueKeep = 64

func newOutQueue(limit int32) *outQueue {
	return &outQueue{limit: int(limit), ready: make(chan struct{}, 1)}
}

// push adds pk unless the queue holds limit packets already.
func (q *outQueue) push(pk *packets.Packet) bool {
	q.mu.Lock()
	if q.n >= q.limit {
		q.mu.Unlock()
		return false
	}
	if q.n == len(q.buf) {
		nb := make([]*packets.Packet, min(max(4, 2*len(q.buf)), q.limit))
		for i := 0; i < q.n; i++ {
			nb[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = pk
	q.n++
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// pop takes the oldest packet, or returns nil when the queue is empty.
func (q *outQueue) pop() *packets.Packet {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		if len(q.buf) > outQueueKeep {
			q.buf, q.head = nil, 0
		}
		return nil
	}
	pk := q.buf[q.head]
	q.buf[q.head] = nil
	q.head = (q.head + 1) % len(q.buf)
	q.n--
	return pk
}

// Len returns the number of packets waiting.
func (q *outQueue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// handlerJob is one inbound packet for a pooled handler goroutine.
type handlerJob struct {
	cl   *Client
	fn   ReadFn
	pk   packets.Packet
	done chan error
}

// handlerWorker is a pooled goroutine that runs packet handlers.
type handlerWorker struct {
	jobs chan *handlerJob
}

var (
	handlerJobPool = sync.Pool{New: func() any { return &handlerJob{done: make(chan error, 1)} }}

	// handlerIdle holds the idle workers, the most recently idle last: work
	// goes to it, so workers beyond what is busy at once stay idle and end.
	handlerIdle struct {
		sync.Mutex
		workers []*handlerWorker
	}
)

// handlerIdleFor is how long a handler goroutine waits for work before it
// ends (a variable for tests; read under handlerIdle's lock).
var handlerIdleFor = 10 * time.Second

// handle runs fn(cl, pk) on a pooled goroutine and waits for its result, so
// packets of one client are still processed one at a time and in order.
// Processing a packet goes 16-32 KB deep (hooks, and packets passed by value
// through several frames), and a goroutine's stack keeps its largest size
// until a collection finds it mostly unused: on the connection's own
// goroutine every connection held a 32 KB stack. The pool holds about as
// many goroutines as packets are in process at once.
func (cl *Client) handle(fn ReadFn, pk packets.Packet) error {
	j := handlerJobPool.Get().(*handlerJob)
	j.cl, j.fn, j.pk = cl, fn, pk
	var w *handlerWorker
	handlerIdle.Lock()
	if n := len(handlerIdle.workers); n > 0 {
		w = handlerIdle.workers[n-1]
		handlerIdle.workers[n-1] = nil
		handlerIdle.workers = handlerIdle.workers[:n-1]
	}
	handlerIdle.Unlock()
	if w != nil {
		w.jobs <- j
	} else {
		go (&handlerWorker{jobs: make(chan *handlerJob, 1)}).run(j)
	}
	err := <-j.done
	*j = handlerJob{done: j.done}
	handlerJobPool.Put(j)
	return err
}

func (w *handlerWorker) run(j *handlerJob) {
	var idle *time.Timer
	for {
		j.done <- j.fn(j.cl, j.pk)
		handlerIdle.Lock()
		handlerIdle.workers = append(handlerIdle.workers, w)
		d := handlerIdleFor
		handlerIdle.Unlock()
		if idle == nil {
			idle = time.NewTimer(d)
			defer idle.Stop()
		} else {
			idle.Reset(d)
		}
		select {
		case j = <-w.jobs:
			continue
		case <-idle.C:
		}
		handlerIdle.Lock()
		for i, x := range handlerIdle.workers {
			if x == w {
				handlerIdle.workers = append(handlerIdle.workers[:i], handlerIdle.workers[i+1:]...)
				handlerIdle.Unlock()
				return
			}
		}
		handlerIdle.Unlock()
		// A client took this worker off the list just now: its job is
		// on the way.
		j = <-w.jobs
	}
}
