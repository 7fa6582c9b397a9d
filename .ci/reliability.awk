# Turns the RELIABILITY lines and the fuzz output of `make reliability`
# (reliability.log) into the table of README "Reliability".
/RELIABILITY / {
	sub(/.*RELIABILITY /, "")
	delete v
	for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
	rows[++n] = sprintf("| %s | %s | %s | %s | %s | %s |", v["scenario"], v["messages"], v["lost"], v["duplicated"], v["leaked"], v["panics"])
	lost += v["lost"]; leaked += v["leaked"]; panics += v["panics"]
	if (v["scenario"] ~ /^corpus/) corpus = v["messages"]
}
/^fuzz: elapsed:/ { last = $5; gsub(/,/, "", last) }
/^(PASS|ok)/ && last != "" { execs += last; targets++; last = "" }
END {
	print "| scenario | messages | lost | duplicated | leaked | panics |"
	print "|---|---:|---:|---:|---:|---:|"
	for (i = 1; i <= n; i++) print rows[i]
	printf "\n%d scenarios; corpus: %d messages; %d fuzz targets, %d executions; lost %d, leaked %d, panics %d in all.\n", n, corpus, targets, execs, lost, leaked, panics
}
