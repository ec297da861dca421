# Shared by the manager drivers (tests/managers.rs): record results and measure what a
# network manager's action leaves of eniroute's routing. Every line written to /out/*.txt is
# "ok ...", "FAIL ..." or "MEASURED manager | setup | action | result".
O=/out/driver.txt
M=/out/matrix.txt
ok()   { echo "ok $*" >> $O; }
fail() { echo "FAIL $*" >> $O; }
E=/eniroute-real
# source:interface:gateway of every address eniroute must route
SRCS="192.168.77.21:eni1:192.168.77.253 192.168.77.22:eni1:192.168.77.253 192.168.78.21:eni2:192.168.78.253 192.168.78.22:eni2:192.168.78.253"
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# the two ENIs: veth pairs whose peers stay up (carrier), as the VPC side
make_enis() {
  ip link add eni1 address 00:16:3e:7e:00:01 type veth peer name eni1p && ip link set eni1p up &&
  ip link add eni2 address 00:16:3e:7e:00:02 type veth peer name eni2p && ip link set eni2p up &&
  ip link set eni1 up && ip link set eni2 up || fail make-enis
}

# every source leaves through its ENI and gateway (the kernel's own lookup)
routes_ok() {
  for s in $SRCS; do
    src=${s%%:*}; rest=${s#*:}; dev=${rest%%:*}; gw=${rest#*:}
    ip route get 198.51.100.7 from "$src" 2>/dev/null | grep -q "via $gw dev $dev " || return 1
  done
}

# what is left of eniroute's objects
snapshot() {
  rules=$(ip rule show | grep -c 'lookup 20[0-9][0-9][0-9]')
  routes=$(ip route show table all proto 225 | wc -l)
  addrs=$(ip -4 addr show | grep -c 'inet 192.168.7[78].22/')
  echo "rules=$rules routes=$routes eniroute-addresses=$addrs"
}

# measure MANAGER SETUP ACTION-TEXT COMMAND...: run the action, then poll the lookups for 1 s;
# "kept" = right within 1 s and still right 1 s later.
measure() {
  mgr=$1; setup=$2; what=$3; shift 3
  before=$(snapshot)
  t0=$(now_ms)
  "$@" >/tmp/action.out 2>&1 || echo "(action rc=$?: $(tr '\n' ' ' </tmp/action.out))" >> $O
  t1=$(now_ms)
  first=""
  while [ $(( $(now_ms) - t1 )) -le 1000 ]; do
    if routes_ok; then first=$(( $(now_ms) - t1 )); break; fi
    sleep 0.02
  done
  sleep 1
  if [ -n "$first" ] && routes_ok; then
    result="kept (right ${first} ms after the action returned, still right 1 s later; action took $((t1 - t0)) ms)"
  else
    result="LOST: $(snapshot) (before: $before)"
  fi
  echo "MEASURED $mgr | $setup | $what | $result" >> $M
}

apply_ok() {
  $E -q apply --lock-timeout 5s >/tmp/apply.out 2>&1 && routes_ok && ok "apply: every source routes right ($1)" \
    || fail "apply ($1): $(tr '\n' ' ' </tmp/apply.out) $(snapshot)"
}

# doctor EXPECTED-RC WHAT GREP...: doctor's exit code, and each id it must name
doctor_is() {
  want=$1; what=$2; shift 2
  $E doctor >/tmp/doctor.out 2>&1; rc=$?
  cp /tmp/doctor.out "/out/doctor-$(echo "$what" | tr ' /' '__').txt"
  [ $rc = "$want" ] && ok "doctor rc=$rc ($what)" || fail "doctor rc=$rc, want $want ($what): $(tr '\n' ' ' </tmp/doctor.out)"
  for id in "$@"; do
    grep -q "\[$id\]" /tmp/doctor.out && ok "doctor names $id ($what)" || fail "doctor does not name $id ($what): $(tr '\n' ' ' </tmp/doctor.out)"
  done
}

# doctor_lacks WHAT ID...: the last doctor run did not name these
doctor_lacks() {
  what=$1; shift
  for id in "$@"; do
    grep -q "\[$id\]" /tmp/doctor.out && fail "doctor names $id ($what): $(tr '\n' ' ' </tmp/doctor.out)" || ok "doctor does not name $id ($what)"
  done
}
