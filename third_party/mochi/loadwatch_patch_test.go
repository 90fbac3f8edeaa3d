// Tests of loadwatch's patches (loadwatch_patch.go).

package mqtt

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

func TestOutQueueOrderAndLimit(t *testing.T) {
	q := newOutQueue(5)
	pks := make([]*packets.Packet, 7)
	for i := range pks {
		pks[i] = &packets.Packet{PacketID: uint16(i + 1)}
	}
	for i := 0; i < 5; i++ {
		if !q.push(pks[i]) {
			t.Fatalf("push %d refused below the limit", i)
		}
	}
	if q.push(pks[5]) {
		t.Fatal("push accepted past the limit of 5")
	}
	if q.Len() != 5 {
		t.Fatalf("Len %d, want 5", q.Len())
	}
	select {
	case <-q.ready:
	default:
		t.Fatal("no ready signal after pushes")
	}
	// Interleave pops and pushes so that the ring wraps.
	next := uint16(1)
	for i := 0; i < 2; i++ {
		if pk := q.pop(); pk == nil || pk.PacketID != next {
			t.Fatalf("pop got %v, want packet %d", pk, next)
		}
		next++
	}
	if !q.push(pks[5]) || !q.push(pks[6]) {
		t.Fatal("push refused after pops made room")
	}
	for ; next <= 7; next++ {
		if pk := q.pop(); pk == nil || pk.PacketID != next {
			t.Fatalf("pop got %v, want packet %d", pk, next)
		}
	}
	if pk := q.pop(); pk != nil {
		t.Fatalf("pop on an empty queue got %v", pk)
	}
}

func TestOutQueueGrowsAndGivesBack(t *testing.T) {
	q := newOutQueue(1024)
	if len(q.buf) != 0 {
		t.Fatalf("a new queue holds %d slots, want 0", len(q.buf))
	}
	q.push(&packets.Packet{})
	if len(q.buf) > 4 {
		t.Fatalf("one packet: %d slots, want at most 4", len(q.buf))
	}
	for i := 1; i < 1000; i++ {
		q.push(&packets.Packet{PacketID: uint16(i)})
	}
	if len(q.buf) < 1000 || len(q.buf) > 1024 {
		t.Fatalf("1000 packets: %d slots", len(q.buf))
	}
	for q.pop() != nil {
	}
	if len(q.buf) > outQueueKeep {
		t.Fatalf("drained queue keeps %d slots, want at most %d", len(q.buf), outQueueKeep)
	}
}

func TestOutQueueConcurrent(t *testing.T) {
	q := newOutQueue(1 << 20)
	const writers, each = 4, 2000
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				q.push(&packets.Packet{PacketID: uint16(w), Origin: "x"})
			}
		}(w)
	}
	got := 0
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for {
		select {
		case <-q.ready:
		case <-done:
		}
		for pk := q.pop(); pk != nil; pk = q.pop() {
			got++
		}
		select {
		case <-done:
			for pk := q.pop(); pk != nil; pk = q.pop() {
				got++
			}
			if got != writers*each {
				t.Fatalf("popped %d packets, want %d", got, writers*each)
			}
			return
		default:
		}
	}
}

// One client's packets are handled one at a time, in order, with the
// handler's error returned; several clients are handled at once.
func TestHandleOrderAndConcurrency(t *testing.T) {
	const clients, each = 8, 200
	var running, peak atomic.Int32
	seen := make([][]uint16, clients)
	var mu sync.Mutex
	errOdd := errors.New("odd")
	fn := func(cl *Client, pk packets.Packet) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(50 * time.Microsecond)
		mu.Lock()
		i := int(cl.ID[0] - 'a')
		seen[i] = append(seen[i], pk.PacketID)
		mu.Unlock()
		running.Add(-1)
		if pk.PacketID%2 == 1 {
			return errOdd
		}
		return nil
	}
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cl := &Client{ID: string(rune('a' + c))}
			for i := 0; i < each; i++ {
				err := cl.handle(fn, packets.Packet{PacketID: uint16(i)})
				if (i%2 == 1) != errors.Is(err, errOdd) {
					t.Errorf("client %d packet %d: error %v", c, i, err)
				}
			}
		}(c)
	}
	wg.Wait()
	for c, ids := range seen {
		if len(ids) != each {
			t.Fatalf("client %d: %d packets handled, want %d", c, len(ids), each)
		}
		for i, id := range ids {
			if int(id) != i {
				t.Fatalf("client %d: packet %d handled in position %d", c, id, i)
			}
		}
	}
	if peak.Load() < 2 {
		t.Errorf("at most %d packets were handled at once by %d clients", peak.Load(), clients)
	}
}

// Workers beyond what is busy end after handlerIdleFor; a busy one stays.
func TestHandleWorkersEnd(t *testing.T) {
	handlerIdle.Lock()
	old := handlerIdleFor
	handlerIdleFor = 20 * time.Millisecond
	handlerIdle.Unlock()
	defer func() {
		handlerIdle.Lock()
		handlerIdleFor = old
		handlerIdle.Unlock()
	}()
	idle := func() int {
		handlerIdle.Lock()
		defer handlerIdle.Unlock()
		return len(handlerIdle.workers)
	}
	// 16 clients at once need up to 16 workers.
	block := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = (&Client{}).handle(func(*Client, packets.Packet) error { <-block; return nil }, packets.Packet{})
		}()
	}
	time.Sleep(10 * time.Millisecond)
	close(block)
	wg.Wait()
	if n := idle(); n < 2 {
		t.Fatalf("%d idle workers after 16 concurrent packets", n)
	}
	deadline := time.Now().Add(30 * time.Second)
	for idle() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still idle long after handlerIdleFor", idle())
		}
		// Keep one client busy: the same most recent worker serves it.
		_ = (&Client{}).handle(func(*Client, packets.Packet) error { return nil }, packets.Packet{})
		time.Sleep(5 * time.Millisecond)
		if idle() <= 1 {
			break
		}
	}
	if n := idle(); n > 1 {
		t.Fatalf("%d idle workers with one client busy, want at most 1", n)
	}
}

// The cost of handing a packet to a pooled goroutine and waiting for it,
// against calling the handler directly (upstream).
func BenchmarkHandle(b *testing.B) {
	fn := func(*Client, packets.Packet) error { return nil }
	cl := &Client{}
	pk := packets.Packet{TopicName: "loadwatch/dev/telemetry"}
	b.Run("pooled", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = cl.handle(fn, pk)
		}
	})
	b.Run("direct", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			_ = fn(cl, pk)
		}
	})
}

func BenchmarkOutQueue(b *testing.B) {
	q := newOutQueue(1024)
	pk := &packets.Packet{}
	for i := 0; i < b.N; i++ {
		q.push(pk)
		q.pop()
	}
}
