import DeliveryOtp
import Foundation
import XCTest

/// Reads the shared vector files in the repository's `tests/vectors/`.
enum Vectors {
    static let dir: URL = {
        if let path = ProcessInfo.processInfo.environment["DELIVERY_OTP_VECTORS"] {
            return URL(fileURLWithPath: path)
        }
        // Tests/DeliveryOtpTests/Vectors.swift -> repository root
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<5 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("tests/vectors")
    }()

    static func load(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: dir.appendingPathComponent(name))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw VectorError.malformed(name)
        }
        return object
    }

    static func cases(_ name: String, _ key: String = "cases") throws -> [[String: Any]] {
        guard let list = try load(name)[key] as? [[String: Any]] else { throw VectorError.malformed("\(name): \(key)") }
        return list
    }
}

enum VectorError: Error { case malformed(String) }

extension Dictionary where Key == String, Value == Any {
    func str(_ key: String) -> String { self[key] as? String ?? "" }
    func optStr(_ key: String) -> String? { self[key] as? String }
    func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue }
    func u32(_ key: String) -> UInt32 { UInt32((self[key] as? NSNumber)?.intValue ?? -1) }
    func u64(_ key: String) -> UInt64 { UInt64(str(key))! }
    var name: String { str("name") }
}

func hex(_ text: String) -> Data {
    var data = Data()
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        data.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return data
}

func algorithm(_ name: String) -> Algorithm {
    switch name {
    case "SHA256": return .sha256
    case "SHA512": return .sha512
    default: return .sha1
    }
}

/// The error kind's name and message as the vector files use them. An
/// exhaustive switch: a new error case fails to compile here until named.
func kind(_ error: OtpError) -> (String, String) {
    switch error {
    case .InvalidDigits(let m): return ("invalid_digits", m)
    case .InvalidPeriod(let m): return ("invalid_period", m)
    case .EmptySecret(let m): return ("empty_secret", m)
    case .SecretTooShort(let m): return ("secret_too_short", m)
    case .SecretTooLong(let m): return ("secret_too_long", m)
    case .RandomUnavailable(let m): return ("random_unavailable", m)
    case .InvalidBase32Character(let m): return ("invalid_base32_character", m)
    case .InvalidBase32Length(let m): return ("invalid_base32_length", m)
    case .TimeBeforeStart(let m): return ("time_before_start", m)
    case .WindowTooLarge(let m): return ("window_too_large", m)
    case .MalformedCode(let m): return ("malformed_code", m)
    case .UnsupportedScheme(let m): return ("unsupported_scheme", m)
    case .UnknownOtpType(let m): return ("unknown_otp_type", m)
    case .MissingAccount(let m): return ("missing_account", m)
    case .MissingSecret(let m): return ("missing_secret", m)
    case .MissingCounter(let m): return ("missing_counter", m)
    case .InvalidParameter(let m): return ("invalid_parameter", m)
    case .DuplicateParameter(let m): return ("duplicate_parameter", m)
    case .ParameterNotAllowed(let m): return ("parameter_not_allowed", m)
    case .UnsupportedAlgorithm(let m): return ("unsupported_algorithm", m)
    case .IssuerMismatch(let m): return ("issuer_mismatch", m)
    case .InvalidLabel(let m): return ("invalid_label", m)
    case .InvalidPercentEncoding(let m): return ("invalid_percent_encoding", m)
    case .InvalidKeyId(let m): return ("invalid_key_id", m)
    case .UnknownKeyId(let m): return ("unknown_key_id", m)
    case .InvalidKey(let m): return ("invalid_key", m)
    case .InvalidKeySet(let m): return ("invalid_key_set", m)
    case .InvalidDeliveryId(let m): return ("invalid_delivery_id", m)
    case .InvalidCodeFormat(let m): return ("invalid_code_format", m)
    case .UnsafeSettings(let m): return ("unsafe_settings", m)
    case .InvalidCodeCharacter(let m): return ("invalid_code_character", m)
    case .WrongCodeLength(let m): return ("wrong_code_length", m)
    case .InvalidTicket(let m): return ("invalid_ticket", m)
    case .UnsupportedTicketVersion(let m): return ("unsupported_ticket_version", m)
    case .TicketMacMismatch(let m): return ("ticket_mac_mismatch", m)
    case .StateStorage(let m): return ("state_storage", m)
    case .CorruptState(let m): return ("corrupt_state", m)
    case .InvalidReceipt(let m): return ("invalid_receipt", m)
    case .UnsupportedReceiptVersion(let m): return ("unsupported_receipt_version", m)
    case .ReceiptMacMismatch(let m): return ("receipt_mac_mismatch", m)
    case .ReceiptConflict(let m): return ("receipt_conflict", m)
    case .InvalidDeviceKey(let m): return ("invalid_device_key", m)
    case .InvalidRequestSignature(let m): return ("invalid_request_signature", m)
    case .InvalidPolicy(let m): return ("invalid_policy", m)
    case .InvalidOrder(let m): return ("invalid_order", m)
    case .InvalidTemplate(let m): return ("invalid_template", m)
    case .InvalidContact(let m): return ("invalid_contact", m)
    case .Overflow(let m): return ("overflow", m)
    }
}

/// A number the vector files write as a string (u64) or as a JSON number.
extension Dictionary where Key == String, Value == Any {
    func num(_ key: String) -> UInt64? {
        if let s = self[key] as? String { return UInt64(s) }
        return (self[key] as? NSNumber)?.uint64Value
    }
}

func codeFormat(_ text: String) -> CodeFormat {
    let parts = text.split(separator: "-")
    let n = UInt32(parts[1])!
    return parts[0] == "numeric" ? .numeric(digits: n) : .crockford(length: n)
}

/// Runs `body`, which must throw an `OtpError`, and returns its kind and message.
func expectOtpError(_ context: String, _ body: () throws -> Any) -> (String, String) {
    do {
        _ = try body()
        XCTFail("\(context): no error thrown")
    } catch let error as OtpError {
        return kind(error)
    } catch {
        XCTFail("\(context): unexpected error \(error)")
    }
    return ("", "")
}
