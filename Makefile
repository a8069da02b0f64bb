.PHONY: test run build bench lint
test:
	bash scripts/test.sh
