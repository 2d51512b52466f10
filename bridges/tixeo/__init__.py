"""The Tixeo bridge (meetings, signalling only): see bridge.py and contract.yaml."""
