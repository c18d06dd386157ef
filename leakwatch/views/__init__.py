"""The read side for people: status, export, lookup, terminal and report rendering."""
