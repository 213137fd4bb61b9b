# table.awk turns the RELIABILITY lines of `go test -v` output of the fault
# cases into RELIABILITY.md's Markdown table, one row per line, in order:
#
#	RELAY_FAULTS=full go test -race -count=1 -v -run TestFault ./natsjs ./redisstreams ./memory \
#	  | awk -f internal/faulttest/table.awk
BEGIN {
	print "| fault | backend | messages | lost | duplicates | recovery | details |"
	print "| --- | --- | ---: | ---: | ---: | ---: | --- |"
}
/RELIABILITY fault=/ {
	sub(/.*RELIABILITY /, "")
	delete f
	details = ""
	for (i = 1; i <= NF; i++) {
		k = $i; sub(/=.*/, "", k)
		v = $i; sub(/^[^=]*=/, "", v)
		f[k] = v
		if (k !~ /^(fault|backend|mode|messages|lost|duplicates|recovery)$/)
			details = details (details == "" ? "" : " ") $i
	}
	printf "| %s | %s | %s | %s | %s | %s | %s |\n", f["fault"], f["backend"], f["messages"], f["lost"], f["duplicates"], f["recovery"], details
}
