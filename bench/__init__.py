"""`make bench`: page cost of the instance list on the hypervisor lab, through delaying forwarders."""
