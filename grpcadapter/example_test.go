package grpcadapter_test

import (
	"context"
	"fmt"

	"github.com/txcloud/keys"
	"github.com/txcloud/keys/grpcadapter"
	"github.com/txcloud/keys/memstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Guard a gRPC method with a permission: the interceptor verifies the
// caller's key and puts the verified key in the handler's context. (A
// server installs it with grpc.ChainUnaryInterceptor; the example calls
// it directly.)
func ExampleUnaryServerInterceptor() {
	ctx := context.Background()
	m, _ := keys.New(memstore.New())
	defer m.Close(ctx)
	reader, _ := m.Create(ctx, keys.APIKeyCreate{Name: "reader", Environment: keys.Live, Permissions: []string{"identity:read"}, AccountID: "acct_1"})
	other, _ := m.Create(ctx, keys.APIKeyCreate{Name: "other", Environment: keys.Live, AccountID: "acct_1"})

	const method = "/txcloud.v1.Identity/Verify"
	intercept := grpcadapter.UnaryServerInterceptor(m, grpcadapter.Require(method, "identity:read"))
	handler := func(ctx context.Context, _ any) (any, error) {
		v, _ := keys.FromContext(ctx)
		return "hello " + v.AccountID, nil
	}
	for _, k := range []keys.Secret{reader.Key, other.Key} {
		call := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+string(k)))
		resp, err := intercept(call, nil, &grpc.UnaryServerInfo{FullMethod: method}, handler)
		fmt.Println(resp, status.Code(err))
	}
	// Output:
	// hello acct_1 OK
	// <nil> PermissionDenied
}
