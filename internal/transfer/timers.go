package transfer

import (
	"container/heap"
	"sync"
	"time"
)

// timers holds the expiry of every ACTIVE transfer this node knows of, soonest
// first, so the expiry loop sleeps exactly until the next one is due.
type timers struct {
	mu      sync.Mutex
	h       expiryHeap
	index   map[key]*expiry
	changed chan struct{} // a send wakes the loop when the soonest expiry changes
}

type expiry struct {
	key key
	at  time.Time
	pos int
}

func newTimers() *timers {
	return &timers{index: map[key]*expiry{}, changed: make(chan struct{}, 1)}
}

func (t *timers) add(k key, at time.Time) {
	t.mu.Lock()
	if e, ok := t.index[k]; ok {
		e.at = at
		heap.Fix(&t.h, e.pos)
	} else {
		e := &expiry{key: k, at: at}
		t.index[k] = e
		heap.Push(&t.h, e)
	}
	soonest := t.h[0].key == k
	t.mu.Unlock()
	if soonest {
		select {
		case t.changed <- struct{}{}:
		default:
		}
	}
}

func (t *timers) remove(k key) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.index[k]; ok {
		heap.Remove(&t.h, e.pos)
		delete(t.index, k)
	}
}

// next returns the soonest expiry.
func (t *timers) next() (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.h) == 0 {
		return time.Time{}, false
	}
	return t.h[0].at, true
}

// due removes and returns every key whose expiry is at or before now.
func (t *timers) due(now time.Time) []key {
	t.mu.Lock()
	defer t.mu.Unlock()
	var keys []key
	for len(t.h) > 0 && !t.h[0].at.After(now) {
		e := heap.Pop(&t.h).(*expiry)
		delete(t.index, e.key)
		keys = append(keys, e.key)
	}
	return keys
}

func (t *timers) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.h)
}

type expiryHeap []*expiry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*expiry)
	e.pos = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
