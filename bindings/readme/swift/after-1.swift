// Runs after the README's Swift block: a wrong code, then the right one.
let readmeKeys = #"{"version":1,"current":"k1","keys":[{"id":"k1","secret":"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA"}]}"#
let backend = Backend(keys: try KeySet.fromJson(json: readmeKeys))
let issued = try backend.issue(deliveryId: "PKG-readme", sequence: 0, courierId: "courier-1",
                               now: Date(), settings: defaultDeliverySettings())
let suite = "readme-\(ProcessInfo.processInfo.processIdentifier)"
let store = DefaultsStore(defaults: UserDefaults(suiteName: suite)!)
let wrong = String(issued.code.dropLast()) + (issued.code.last == "0" ? "1" : "0")
let first = try await checkCode(ticketJson: issued.ticket.toJson(), typed: wrong, store: store)
precondition(first == "Wrong code, 4 attempts left", first)
let second = try await checkCode(ticketJson: issued.ticket.toJson(), typed: issued.code, store: store)
precondition(second == "Accepted: hand the parcel over", second)
UserDefaults.standard.removePersistentDomain(forName: suite)
print("swift block: ok")
