-- Releasing a number finds it by the transfer holding it.
CREATE INDEX numbers_holder ON numbers (leased_tenant, leased_transfer);
