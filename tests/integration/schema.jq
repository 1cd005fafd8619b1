# schema.jq -- checks a document against the JSON Schema subset configs/*.schema.json use:
# type, enum, const, minimum, maximum, pattern, required, properties, additionalProperties,
# items and local $ref ("#/$defs/NAME"). Prints one line per violation; nothing means valid.
#   jq -r --slurpfile schema configs/report.schema.json -f tests/integration/schema.jq DOC.json
def jtype: if type == "number" then (if . == floor then "integer" else "number" end) else type end;
def typeok($t): $t == jtype or ($t == "number" and type == "number");
def check($root; $s; $path):
  if ($s | has("$ref")) then check($root; $root["$defs"][$s["$ref"] | ltrimstr("#/$defs/")]; $path)
  else
    (. as $v | if ($s | has("type")) and ([$s.type] | flatten | any(. as $t | $v | typeok($t)) | not)
       then "\($path): expected \($s.type), got \(jtype)" else empty end),
    (if ($s | has("const")) and . != $s.const then "\($path): expected \($s.const), got \(.)" else empty end),
    (. as $v | if ($s | has("enum")) and ($s.enum | index([$v]) | not)
       then "\($path): \($v) is not one of \($s.enum)" else empty end),
    (if ($s | has("minimum")) and type == "number" and . < $s.minimum
       then "\($path): \(.) < minimum \($s.minimum)" else empty end),
    (if ($s | has("maximum")) and type == "number" and . > $s.maximum
       then "\($path): \(.) > maximum \($s.maximum)" else empty end),
    (if ($s | has("pattern")) and type == "string" and (test($s.pattern) | not)
       then "\($path): \(.) does not match \($s.pattern)" else empty end),
    (if type == "object" then
       (($s.required // [])[] as $k | if has($k) then empty else "\($path): missing key \($k)" end),
       (to_entries[] as $e |
         if ($s.properties // {} | has($e.key)) then
           ($e.value | check($root; $s.properties[$e.key]; "\($path).\($e.key)"))
         elif $s.additionalProperties == false then "\($path): unexpected key \($e.key)"
         elif ($s.additionalProperties | type) == "object" then
           ($e.value | check($root; $s.additionalProperties; "\($path).\($e.key)"))
         else empty end)
     else empty end),
    (if type == "array" and ($s | has("items")) then
       (to_entries[] as $e | $e.value | check($root; $s.items; "\($path)[\($e.key)]"))
     else empty end)
  end;
$schema[0] as $sch | check($sch; $sch; "$")
