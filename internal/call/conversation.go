package call

import (
	"context"
	"time"

	"github.com/switchback/switchback"
)

// loadConversation reads the conversation a call continues: nil on its
// first call, or when the store cannot say (the agent then starts afresh,
// and what it saves must not overwrite the state the conversation's next
// call should resume from).
func (c *Call) loadConversation(ctx context.Context) *switchback.Conversation {
	if c.t.ExternalConversationID == "" {
		return nil
	}
	var conv *switchback.Conversation
	var err error
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, c.r.retry.Timeout)
		conv, err = c.r.transfers.Conversation(rctx, c.t.TenantID, c.t.ExternalConversationID)
		cancel()
		if err == nil || switchback.ErrorCode(err) == switchback.ENOTFOUND || attempt == 3 || ctx.Err() != nil {
			break
		}
		if !c.sleep(50 * time.Millisecond) {
			break
		}
	}
	if switchback.ErrorCode(err) == switchback.ENOTFOUND {
		return nil
	} else if err != nil {
		c.log.Warn("read the conversation; the agent starts afresh and its state is not kept", "err", err)
		c.journal.mu.Lock()
		c.journal.keepState = true
		c.journal.mu.Unlock()
		return nil
	}
	if len(conv.State) == 0 && len(conv.Events) == 0 {
		return nil // this is its first call
	}
	return conv
}
