import DeliveryOtp
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest

/// The courier app against the real service over HTTP (scripts/test-swift starts
/// `delivery-otp-server` and passes its address and admin token in the environment):
/// log in, fetch the tickets, check the code offline, sign and upload the receipt,
/// read the decision. URLSession comes from FoundationNetworking on Linux.
final class ServiceHttpTests: XCTestCase {
    private func send(_ method: String, _ url: URL, authorization: String, body: Data?) async throws -> (Int, [String: Any]) {
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.setValue(authorization, forHTTPHeaderField: "Authorization")
        if let body {
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
            request.httpBody = body
        }
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let json = data.isEmpty ? [:] : (try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:])
        return (status, json)
    }

    func testACourierAppDeliversAgainstTheService() async throws {
        guard let base = ProcessInfo.processInfo.environment["DELIVERY_OTP_SERVER"],
              let admin = ProcessInfo.processInfo.environment["DELIVERY_OTP_ADMIN_TOKEN"] else {
            XCTFail("DELIVERY_OTP_SERVER and DELIVERY_OTP_ADMIN_TOKEN are not set: run scripts/test-swift")
            return
        }
        let backend = { (method: String, path: String, body: String?) in
            try await self.send(method, URL(string: base + path)!, authorization: "Bearer \(admin)", body: body.map { Data($0.utf8) })
        }
        let delivery = "PKG-SW-\(UInt64(Date().timeIntervalSince1970 * 1000))"
        let (provisioned, login) = try await backend("POST", "/v1/devices", #"{"courier_id":"courier-sw","device_id":"iphone-sw"}"#)
        XCTAssertEqual(provisioned, 201, "\(login)")
        let key = try DeviceKey.fromJson(json: login["device_key"] as! String)
        let phone = { (method: String, path: String, body: String?) in
            let bytes = Data((body ?? "").utf8)
            let header = key.signRequestNow(method: method, path: path, body: bytes)
            return try await self.send(method, URL(string: base + path)!, authorization: header, body: body.map { Data($0.utf8) })
        }
        let order = #"{"value_minor":15000,"currency":"EUR","method":"hand_to_customer","categories":[],"region_risk":10,"customer_preference":"none","first_delivery_to_address":false,"not_received_claims":0}"#
        let (issuedStatus, issued) = try await backend("POST", "/v1/deliveries",
            #"{"delivery_id":"\#(delivery)","courier_id":"courier-sw","order":\#(order),"contact":{"phone":"+33612345678"}}"#)
        XCTAssertEqual(issuedStatus, 201, "\(issued)")
        let text = (issued["message"] as! [String: Any])["text"] as! String
        // "... code 354 132 for parcel ...": the customer reads it out.
        let after: String = text.components(separatedBy: "code ").dropFirst().first ?? ""
        let code = String(String(after.prefix(7)).filter { $0.isNumber })
        XCTAssertEqual(code.count, 6, text)

        let (ticketsStatus, tickets) = try await phone("GET", "/v1/devices/courier-sw/iphone-sw/tickets", nil)
        XCTAssertEqual(ticketsStatus, 200, "\(tickets)")
        let ticketJson = try XCTUnwrap((tickets["tickets"] as! [String]).first { (try? Ticket.fromJson(json: $0).deliveryId) == delivery })
        let verifier = OfflineVerifier(ticket: try Ticket.fromJson(json: ticketJson), store: MapStateStore())
        guard case .acceptedProvisionally = try verifier.verifyNow(entered: code) else {
            return XCTFail("the right code was not accepted offline")
        }
        let receipt = try verifier.receiptNow(deviceKey: key, handover: .deliveredOffline(code: code),
                                              details: ReceiptDetails(appVersion: "ios/test"))
        let upload = String(data: try JSONSerialization.data(withJSONObject: ["receipts": [receipt.toJson()]]), encoding: .utf8)!
        let (uploadStatus, results) = try await phone("POST", "/v1/receipts", upload)
        XCTAssertEqual(uploadStatus, 200, "\(results)")
        let result = (results["results"] as! [[String: Any]])[0]
        XCTAssertEqual(result["decision"] as? String, "confirmed", "\(result)")
        let (status, state) = try await backend("GET", "/v1/deliveries/\(delivery)", nil)
        XCTAssertEqual(status, 200)
        XCTAssertEqual(state["status"] as? String, "confirmed", "\(state)")
    }
}
