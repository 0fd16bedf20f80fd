-- Argo CD health of a tradebot.dev CircuitBreaker: Closed is healthy, Open (bots stopped)
-- degraded, HalfOpen (bots on probation) progressing; an invalid spec is degraded.
local hs = {status = "Progressing", message = "waiting for the operator"}
if obj.status == nil then return hs end
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Valid" and c.status == "False" then
      return {status = "Degraded", message = c.message or "invalid spec"}
    end
  end
end
local state = obj.status.state
if state == "Closed" then
  hs.status = "Healthy"
  hs.message = "closed"
elseif state == "Open" then
  hs.status = "Degraded"
  hs.message = "open: its bots are stopped until it is reset"
  if obj.status.reason ~= nil then hs.message = "open: " .. obj.status.reason end
elseif state == "HalfOpen" then
  hs.status = "Progressing"
  hs.message = "half-open: bots run on probation"
end
return hs
