package inventory

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// EventRecorder creates Warning Events on pods, as component.
func EventRecorder(client kubernetes.Interface, component string) func(ctx context.Context, namespace, name, uid, reason, message string) error {
	return func(ctx context.Context, namespace, name, uid, reason, message string) error {
		pod := struct{ Namespace, Name, UID string }{namespace, name, uid}
		now := metav1.NewTime(time.Now())
		ev := &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{GenerateName: pod.Name + ".", Namespace: pod.Namespace},
			InvolvedObject: corev1.ObjectReference{
				APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: types.UID(pod.UID),
			},
			Reason:              reason,
			Message:             message,
			Type:                corev1.EventTypeWarning,
			Source:              corev1.EventSource{Component: component},
			FirstTimestamp:      now,
			LastTimestamp:       now,
			Count:               1,
			ReportingController: "trustgate.dev/" + component,
			ReportingInstance:   component,
		}
		if _, err := client.CoreV1().Events(pod.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create event on pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		return nil
	}
}
