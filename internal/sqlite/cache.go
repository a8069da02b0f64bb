package sqlite

import (
	"sync"

	"github.com/switchback/switchback"
)

// transferCache keeps the committed state of recently written or read
// transfers, so a GET, the API's most frequent request, costs no query. It
// is only correct while this process is the file's only writer of
// transfers, which Open with Options.Cache guarantees with a lock file.
//
// Writes update it in commit order (wtx.afterCommit). A read that misses
// fills it only if no write touched the cache while the row was read, so a
// slow read can never put back a state older than a newer write's.
type transferCache struct {
	mu  sync.Mutex
	m   map[cacheKey]*switchback.Transfer
	seq uint64 // bumped by every write
	max int    // 0: the cache is off
}

type cacheKey struct{ tenant, id string }

func newTransferCache(max int) *transferCache {
	return &transferCache{m: make(map[cacheKey]*switchback.Transfer), max: max}
}

// get returns a private copy of a cached transfer, or the sequence number
// to pass to fill after reading it from the file.
func (c *transferCache) get(tenant, id string) (*switchback.Transfer, uint64) {
	if c.max == 0 {
		return nil, 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.m[cacheKey{tenant, id}]; ok {
		cp := *t
		return &cp, 0
	}
	return nil, c.seq
}

// put records a transfer's newly committed state.
func (c *transferCache) put(t *switchback.Transfer) {
	if c.max == 0 {
		return
	}
	cp := *t
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	c.store(&cp)
}

// drop forgets a transfer whose committed state changed without being read back.
func (c *transferCache) drop(tenant, id string) {
	if c.max == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	delete(c.m, cacheKey{tenant, id})
}

// fill caches what a read found, unless a write happened since seq.
func (c *transferCache) fill(t *switchback.Transfer, seq uint64) {
	if c.max == 0 {
		return
	}
	cp := *t
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seq == seq {
		c.store(&cp)
	}
}

func (c *transferCache) store(t *switchback.Transfer) {
	if len(c.m) >= c.max {
		// Forget about a tenth, whichever the map yields first: cheap, and
		// a forgotten transfer is only a query away.
		n := c.max / 10
		for k := range c.m {
			if n <= 0 {
				break
			}
			delete(c.m, k)
			n--
		}
	}
	c.m[cacheKey{t.TenantID, t.ID}] = t
}
