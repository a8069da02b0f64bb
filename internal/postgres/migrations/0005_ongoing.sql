-- The sweep finds calls abandoned by a node that died with them: the few
-- ONGOING transfers, by when their call arrived.
CREATE INDEX transfers_ongoing ON transfers (call_received_at) WHERE status = 'ONGOING';
