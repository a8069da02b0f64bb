package httpapi

import "container/list"

// lru is a map of at most max entries that forgets its least recently used
// entry to make room: memory that input from the network can fill has a
// bound. It is not safe for concurrent use.
type lru[K comparable, V any] struct {
	max   int
	items map[K]*list.Element
	order *list.List // most recently used first; values are *lruEntry
}

type lruEntry[K comparable, V any] struct {
	key K
	val V
}

func newLRU[K comparable, V any](max int) *lru[K, V] {
	return &lru[K, V]{max: max, items: make(map[K]*list.Element), order: list.New()}
}

// get returns the value of k, and makes it the most recently used.
func (c *lru[K, V]) get(k K) (V, bool) {
	e, ok := c.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry[K, V]).val, true
}

// put sets k to v, forgetting the least recently used entry if the map is
// full.
func (c *lru[K, V]) put(k K, v V) {
	if e, ok := c.items[k]; ok {
		e.Value.(*lruEntry[K, V]).val = v
		c.order.MoveToFront(e)
		return
	}
	if c.order.Len() >= c.max {
		oldest := c.order.Back()
		delete(c.items, oldest.Value.(*lruEntry[K, V]).key)
		c.order.Remove(oldest)
	}
	c.items[k] = c.order.PushFront(&lruEntry[K, V]{k, v})
}

func (c *lru[K, V]) remove(k K) {
	if e, ok := c.items[k]; ok {
		delete(c.items, k)
		c.order.Remove(e)
	}
}

func (c *lru[K, V]) len() int { return c.order.Len() }
